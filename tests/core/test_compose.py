"""What users type on the command line becomes strategies: names, ablation variants, combinations."""

from __future__ import annotations

import warnings

import pytest

from prune_bench.core.compose import Combined, Variant, build_strategy, parse_part, split_specs
from prune_bench.core.plugins import registry
from prune_bench.core.stages import PruningPlan
from prune_bench.errors import UserError


def test_specs_split_on_plus_outside_brackets_and_parse_options():
    assert split_specs("hieravid[prune_ratios=[0.5,0.3,0.3,0.57],segment_level=false]+fastv") == [
        "hieravid[prune_ratios=[0.5,0.3,0.3,0.57],segment_level=false]",
        "fastv",
    ]
    name, options, tag = parse_part("hieravid[prune_ratios=[0.5,0.3,0.3,0.57],segment_level=False]")
    assert name == "hieravid" and options == {"prune_ratios": [0.5, 0.3, 0.3, 0.57], "segment_level": False}
    assert tag.startswith("prune_ratios=")


def test_a_variant_is_labelled_and_configured(tiny_adapter):
    info = tiny_adapter.model_info(6)
    s = build_strategy("hieravid[segment_level=false]", 0.3, "layer-average", info, registry())
    assert isinstance(s, Variant) and s.label == "hieravid[segment_level=false]"
    assert s.inner.config.segment_level is False


def test_bad_variant_options_are_one_readable_error(tiny_adapter):
    info = tiny_adapter.model_info(6)
    with pytest.raises(UserError, match="invalid options for strategy 'hieravid'"):
        build_strategy("hieravid[segment_levl=false]", 0.3, "layer-average", info, registry())
    with pytest.raises(UserError, match="needs a value"):
        build_strategy("hieravid[segment_level]", 0.3, "layer-average", info, registry())


def test_visionzip_plus_fastv_mounts_both_and_reports_the_achieved_retention(tiny_adapter, tiny_sample):
    info = tiny_adapter.model_info(6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny model cannot reach every share exactly
        combo = build_strategy("visionzip+fastv", 0.3, "layer-average", info, registry())
    assert isinstance(combo, Combined) and combo.label == "visionzip+fastv"
    stages = combo.stages(info)
    assert {s.hook for s in stages} == {"input", "layer"}
    _, _, sample = tiny_sample
    result = tiny_adapter.run(sample, PruningPlan.of(stages, info.num_layers))
    # visionzip prunes at the input, fastv again inside the LLM: both reductions show in the ledger
    assert result.input_retention < 1.0
    assert result.layer_average_retention < result.input_retention
