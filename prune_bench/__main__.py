"""``python -m prune_bench`` is the ``prune-bench`` command."""

from prune_bench.cli.main import main

main()
