"""Start-up stays cheap: ``--help`` and ``list`` import neither Triton nor the hand-written kernels.

``python -X importtime`` logs every import, including a failed attempt (``import triton`` where it
is not installed shows up too), so these tests see what start-up tries to import, not only what it gets.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

KERNELS = ("dpp_triton", "dpp_persistent", "gram", "graph_steps", "triton_fallback")
#: Triton, and the hand-written kernel modules (in prune_bench/kernels/, formerly strategies/common/)
KERNEL_MODULES = re.compile(
    r"^(triton(\..*)?|prune_bench\.(kernels|strategies\.common)\.(" + "|".join(KERNELS) + r"))$"
)


def _imports(tmp_path, *args: str) -> list[str]:
    """What ``python -X importtime -m prune_bench ARGS`` imports or tries to (built-in plugins only).

    ``-X importtime`` logs import statements, failed ones included, but not modules imported through
    ``importlib.import_module`` (as the registry imports built-in plugins), so the modules left in
    ``sys.modules`` at exit are added.
    """
    loaded = tmp_path / "sys.modules"
    script = (
        "import atexit, runpy, sys\n"
        f"atexit.register(lambda: open({str(loaded)!r}, 'w').write('\\n'.join(sys.modules)))\n"
        f"sys.argv = ['prune-bench', *{list(args)!r}]\n"
        "runpy.run_module('prune_bench', run_name='__main__', alter_sys=True)\n"
    )
    env = {**os.environ, "PRUNE_BENCH_PLUGINS": ""}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    logged = [
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2 and "imported package" not in line
    ]
    return logged + loaded.read_text().split("\n")


def test_help_imports_no_kernel_and_no_strategy(tmp_path):
    modules = _imports(tmp_path, "--help")
    assert {"click", "prune_bench.cli.commands", "prune_bench.cli.list_cmd"} <= set(modules)
    assert [m for m in modules if KERNEL_MODULES.match(m)] == []
    # built-in strategies (and so the kernels package) are imported only when strategies are asked for
    assert [m for m in modules if m.startswith(("prune_bench.strategies", "prune_bench.kernels"))] == []


def test_list_imports_no_kernel(tmp_path):
    modules = _imports(tmp_path, "list")
    assert "prune_bench.strategies.hieravid" in modules
    assert [m for m in modules if KERNEL_MODULES.match(m)] == []
