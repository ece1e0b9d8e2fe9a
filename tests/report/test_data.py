"""What the report reads back from a recorded strategy name, and the FLOPs conventions it offers."""

from __future__ import annotations

import click
import pytest

from prune_bench.cli.main import cli
from prune_bench.core.compose import Variant, split_specs
from prune_bench.core.flops import CONVENTIONS
from prune_bench.report.data import split_variant
from prune_bench.report.tables import FLOPS_NOTE
from prune_bench.strategies.simple import RandomPruning


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [
        ("hieravid[segment_level=false]", ("hieravid", "segment_level=false")),
        ("my.plugin-x[k=1,ratio=0.2]", ("my.plugin-x", "k=1,ratio=0.2")),
        ("hieravid[layers=[2,4]]", ("hieravid", "layers=[2,4]")),  # brackets inside a value
        ("hieravid", None),
        ("none", None),
        ("visionzip+fastv", None),
        ("visionzip[dominant=10]+fastv", None),
        ("visionzip+fastv[k=2]", None),
        ("a[x=1]+b[y=2]", None),
        ("a[x=1]b", None),  # not the grammar: not a variant
        ("a[flag]", None),  # an option without a value never ran
    ],
)
def test_split_variant_reads_the_cli_grammar(recorded: str, expected: tuple[str, str] | None) -> None:
    assert split_variant(recorded) == expected


def test_split_variant_reads_back_the_label_a_variant_records() -> None:
    variant = Variant(RandomPruning(), "keep=0.5,seed=[1,2]")
    assert split_specs(variant.label) == [variant.label]
    assert split_variant(variant.label) == ("random", "keep=0.5,seed=[1,2]")


def test_flops_conventions_are_the_ones_flops_counts() -> None:
    assert set(FLOPS_NOTE) == set(CONVENTIONS)
    for name in ("table", "plot", "report"):
        command = cli.get_command(click.Context(cli), name)
        assert command is not None, name
        (flops,) = [p for p in command.params if p.name == "flops"]
        assert isinstance(flops.type, click.Choice)
        assert tuple(flops.type.choices) == CONVENTIONS, name
