"""The contract every strategy honours, built-in or plugin, as a pytest test class.

On the tiny 8-layer random-weight model of every registered adapter (a 16-frame video of two scenes;
16 tokens a layout frame: LLaVA-OneVision's 16 frames of 4x4 tokens, Qwen2-VL's 8 frame pairs of 4x4
tokens): valid selections that never touch text, the requested layer-averaged budget met (or a
``BudgetWarning``), drop mode equal to mask mode, determinism for a seed, configs that reject unknown
fields and describe every field, and ablation variants that are valid and run. A strategy whose stages
need a model internal an adapter cannot provide (``ModelInfo.capabilities``; VisionZip's vision
attention on Qwen2.5-VL) is skipped on that adapter, with the reason.

A strategy package gets all of it with the pytest plugin :mod:`prune_bench.pytest_plugin` (loaded
automatically once prune-bench is installed) and three lines in a test module::

    from prune_bench.contract import StrategyContract

    class TestMyStrategies(StrategyContract):
        pass

The plugin parametrizes ``strategy_name`` over ``prune_bench_strategies`` (an ini option, e.g.
``prune_bench_strategies = ["norm"]`` under ``[tool.pytest.ini_options]``), or over every registered
strategy when unset. The fixtures ``contract_adapter`` and ``contract_sample`` come from the plugin.
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from prune_bench.adapters.base import Adapter, EncodedSample
    from prune_bench.session import Session

#: Input frames of the contract's video (two scenes of 8 frames each); how many layout frames they make
#: is the adapter's business (``session.model_info().num_frames``: 16 for LLaVA-OneVision, 8 frame pairs
#: for Qwen2-VL).
CONTRACT_FRAMES = 16


def build_session(
    adapter: Adapter, name: str, keep: float, *, mode: str = "drop", seed: int = 0, **options: Any
) -> tuple[Session, bool]:
    """(session, warned): strategy ``name`` budgeted at layer-average ``keep`` for the contract video,
    and whether budgeting raised a :class:`~prune_bench.core.strategy.BudgetWarning`.

    A strategy that needs a model internal ``adapter`` does not provide skips the calling test."""
    from prune_bench.core.strategy import BudgetWarning
    from prune_bench.errors import UserError
    from prune_bench.session import Session

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            session = Session(
                adapter,
                name,
                keep=keep,
                mode=mode,  # type: ignore[arg-type]
                seed=seed,
                options={name: options} if options else None,
                num_frames=CONTRACT_FRAMES,
            )
        except UserError:
            _skip_if_unserved(adapter, name, keep, options)
            raise
    warned = any(issubclass(w.category, BudgetWarning) for w in caught)
    return session, warned


def _skip_if_unserved(adapter: Adapter, name: str, keep: float, options: dict[str, Any]) -> None:
    """Skip the test when ``name``'s stages need what ``adapter`` cannot provide for this checkpoint
    (the session refused the plan for that); any other refusal is the strategy's failure."""
    from prune_bench.core.compose import build_strategy
    from prune_bench.core.plugins import registry

    info = adapter.model_info(CONTRACT_FRAMES)
    strategy = build_strategy(
        name, keep, "layer-average", info, registry(), {name: options} if options else None
    )
    needs = frozenset().union(*(stage.needs for stage in strategy.stages(info)))
    missing = needs - info.capabilities
    if missing:
        pytest.skip(
            f"{name} needs {', '.join(sorted(missing))}, which the {info.family} adapter does not provide "
            f"for this architecture (ModelInfo.capabilities: {sorted(info.capabilities) or 'none'})"
        )


def _text_count(sample: EncodedSample) -> int:
    return int((sample.state.kind == 0).sum())


class StrategyContract:
    """Contract tests, run for each ``strategy_name`` the plugin parametrizes. Subclass it as
    ``Test...`` in a test module to collect it."""

    @pytest.mark.parametrize("keep", [0.2, 0.5])
    def test_budget_is_met_or_warned(
        self, contract_adapter: Adapter, contract_sample: EncodedSample, strategy_name: str, keep: float
    ) -> None:
        session, warned = build_session(contract_adapter, strategy_name, keep)
        result = session.answer(contract_sample)
        achieved = result.layer_average_retention
        if strategy_name == "none":
            assert achieved == 1.0
        elif not warned:
            # the finest step a per-frame method can take is one token of each frame: 1/16 at 16 tokens
            step = 1 / session.model_info().tokens_per_frame
            assert achieved == pytest.approx(keep, abs=max(0.04, 0.6 * step)), (
                f"{strategy_name}: asked {keep}, got {achieved:.3f}"
            )
        text = _text_count(contract_sample)
        assert all(c.attn_tokens - c.attn_visual >= text for c in result.counts), "a stage removed text"

    def test_drop_mode_equals_mask_mode_and_is_deterministic(
        self, contract_adapter: Adapter, contract_sample: EncodedSample, strategy_name: str
    ) -> None:
        import torch

        session, _ = build_session(contract_adapter, strategy_name, 0.3, seed=3)
        masked, _ = build_session(contract_adapter, strategy_name, 0.3, seed=3, mode="mask")
        drop = session.answer(contract_sample, max_new_tokens=4)
        again = session.answer(contract_sample, max_new_tokens=4)
        mask = masked.answer(contract_sample, max_new_tokens=4)
        assert drop.generated == again.generated and drop.option_logits == again.option_logits
        assert [c.mlp_visual for c in drop.counts] == [c.mlp_visual for c in mask.counts]
        assert drop.generated == mask.generated
        torch.testing.assert_close(
            torch.tensor(drop.option_logits), torch.tensor(mask.option_logits), atol=2e-4, rtol=1e-4
        )
        assert drop.decode_visible_visual == mask.decode_visible_visual

    def test_config_rejects_unknown_fields_and_describes_itself(self, strategy_name: str) -> None:
        from prune_bench.core.plugins import registry
        from prune_bench.errors import UserError

        cls = registry().strategy(strategy_name)
        with pytest.raises(UserError, match=f"invalid options for strategy '{strategy_name}'"):
            cls(no_such_option=1)
        assert cls.summary, f"{strategy_name} needs a one-line summary"
        module_doc = sys.modules[cls.__module__].__doc__
        assert module_doc, f"{strategy_name}'s module must say which paper and code it follows"
        undocumented = [n for n, f in cls.Config.model_fields.items() if not f.description]
        assert not undocumented, f"{strategy_name}: config fields without a description: {undocumented}"
        json.dumps(cls().describe())

    def test_ablations_are_valid_variants_that_run(
        self, contract_adapter: Adapter, contract_sample: EncodedSample, strategy_name: str
    ) -> None:
        from prune_bench.core.compose import parse_part
        from prune_bench.core.plugins import registry

        cls = registry().strategy(strategy_name)
        if not cls.ablations:
            pytest.skip(f"{strategy_name} declares no ablations")
        defaults = cls.make_config().model_dump()
        for label, spec in cls.ablation_specs().items():
            options = cls.ablations[label]
            name, parsed, _ = parse_part(spec)  # the spec ``ablate`` passes round-trips
            assert name == strategy_name, spec
            assert cls.make_config(**parsed) == cls.make_config(**options), (spec, options)
            changed = cls.make_config(**options).model_dump()
            assert any(changed[k] != defaults[k] for k in options), f"ablation '{label}' changes nothing"
            session, _ = build_session(contract_adapter, strategy_name, 0.3, **options)
            result = session.answer(contract_sample)
            assert 0 < result.layer_average_retention <= 1, label
            text = _text_count(contract_sample)
            assert all(c.attn_tokens - c.attn_visual >= text for c in result.counts), label
