"""Reports from a results directory: accuracy tables (markdown, LaTeX, CSV) and figures.

Tables: :func:`prune_bench.report.tables.render`; figures: :func:`prune_bench.report.plots.write_figures`;
reading and shaping records: :mod:`prune_bench.report.data`. matplotlib is imported only by the figure
modules (``plots``, ``ablation_plot``, ``captions``, ``speed_plots``).
"""
