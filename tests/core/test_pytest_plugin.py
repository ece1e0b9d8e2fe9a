"""The pytest plugin gives a strategy package the contract on the strategies it names, and nothing
more; a name nobody registers is a usage error that says so."""

from __future__ import annotations

import pytest

from prune_bench.pytest_plugin import build_contract_adapter, build_contract_inputs, contract_architectures

pytest_plugins = ["pytester"]

CONTRACT_MODULE = """
from prune_bench.contract import StrategyContract

class TestContract(StrategyContract):
    pass
"""


@pytest.fixture(autouse=True, scope="module")
def _imports_done_outside() -> None:
    """In-process runs drop the modules they imported; torch's cannot be imported twice, so every
    module the contract needs is imported (by building each tiny architecture's sample and loading
    every strategy) before the inner runs."""
    import prune_bench.adapter_contract  # noqa: F401
    import prune_bench.contract  # noqa: F401
    import prune_bench.session  # noqa: F401
    from prune_bench.core.plugins import registry

    for name in registry().strategies:
        registry().strategy(name)
    for architecture in contract_architectures():
        adapter = build_contract_adapter(architecture)
        ids, pixels = build_contract_inputs(adapter)
        adapter.encode_ids(ids, pixels, None, capture_vision=True)


def test_ini_option_picks_the_strategies_and_the_command_line_overrides_it(pytester: pytest.Pytester):
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nprune_bench_strategies = ["random"]\n')
    pytester.makepyfile(test_package_contract=CONTRACT_MODULE)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-v")
    # on each tiny architecture (3 built in): two budgets and drop == mask; random declares no ablations,
    # so that one is skipped; the config test needs no model and runs once
    architectures = len(contract_architectures())
    result.assert_outcomes(passed=3 * architectures + 1, skipped=architectures)
    assert all("[random" in line for line in result.outlines if "PASSED" in line)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--prune-bench-strategies", "hieravid")
    result.assert_outcomes(passed=4 * architectures + 1)  # hieravid declares ablations: all of them run


def test_an_unregistered_strategy_is_a_usage_error(pytester: pytest.Pytester):
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nprune_bench_strategies = ["nosuch"]\n')
    pytester.makepyfile(test_package_contract=CONTRACT_MODULE)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(
        ["*prune_bench_strategies names nosuch, which no installed plugin registers*"]
    )


def test_other_projects_strategy_name_arguments_are_left_alone(pytester: pytest.Pytester):
    pytester.makepyfile(
        test_unrelated="""
import pytest

@pytest.fixture
def strategy_name():
    return "their own"

def test_theirs(strategy_name):
    assert strategy_name == "their own"
"""
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
