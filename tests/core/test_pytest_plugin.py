"""The pytest plugin gives a strategy package the contract on the strategies it names, and nothing
more; a name nobody registers is a usage error that says so."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CONTRACT_MODULE = """
from prune_bench.contract import StrategyContract

class TestContract(StrategyContract):
    pass
"""


@pytest.fixture(autouse=True)
def _imports_done_outside(contract_sample) -> None:
    """In-process runs drop the modules they imported; torch's cannot be imported twice, so every
    module the contract needs is imported (by building its sample) before the inner runs."""


def test_ini_option_picks_the_strategies_and_the_command_line_overrides_it(pytester: pytest.Pytester):
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nprune_bench_strategies = ["random"]\n')
    pytester.makepyfile(test_package_contract=CONTRACT_MODULE)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-v")
    # two budgets, drop == mask, config; random declares no ablations, so that one is skipped
    result.assert_outcomes(passed=4, skipped=1)
    assert all("[random" in line for line in result.outlines if "PASSED" in line)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--prune-bench-strategies", "hieravid")
    result.assert_outcomes(passed=5)  # hieravid declares ablations: all five run


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
