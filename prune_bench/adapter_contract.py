"""The contract every model adapter honours, built-in or plugin, as a pytest test class.

On each tiny random-weight architecture of every registered adapter (``Adapter.tiny_architectures``,
8 layers, the strategy contract's 16-frame video of two scenes):

* ``keep=1.0`` (``none``, and ``random``'s stage keeping everything) reproduces the unmodified Hugging
  Face model's last-token logits for the prefill and four greedy decode steps (the reference
  recomputes the whole sequence each step from ``Adapter.reference_inputs``: no cache of ours);
* drop mode equals mask mode for pruning plans (``random`` at keep 0.5 at the input and after layer 1,
  ``fastv``): the same logits at every step and the same kept tokens;
* kept tokens keep their original positions (1-D or M-RoPE ``[3, N]``) and layout, decoding continues
  at the unpruned prompt's ``next_position``, and every layer caches exactly the tokens its attention saw;
* ``ctx.last_token_attention`` equals the HF language model's eager attention rows;
* ``model_info(frames)`` describes what encoding gives (layout frames, tokens a frame, visual tokens,
  layers, hidden size, family), for the contract video and for synthetic videos of 16 and 5 frames;
* ``capabilities`` is honest: with ``"vision_attention"`` a VisionZip session runs and the captured
  attention has the layout's shape; without it, building one is a UserError.

An adapter package gets all of it with the pytest plugin :mod:`prune_bench.pytest_plugin` and::

    from prune_bench.adapter_contract import AdapterContract

    class TestMyAdapter(AdapterContract):
        pass

The fixtures ``contract_adapter``, ``contract_inputs`` and ``contract_sample`` come from the plugin, once
per tiny architecture of every registered adapter (yours included once its plugin registers it).
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from prune_bench.contract import CONTRACT_FRAMES, build_session

if TYPE_CHECKING:
    import torch

    from prune_bench.adapters.base import Adapter, EncodedSample

#: logits compared with the HF model: the prefill's and four greedy decode steps'
CONTRACT_STEPS = 5
#: pruning plans drop mode is checked against mask mode on: (strategy, keep, options)
PRUNING_PLANS: list[tuple[str, float, dict[str, Any]]] = [
    ("random", 0.5, {}),
    ("random", 0.5, {"layer": 1}),
    ("fastv", 0.5, {}),
]


def hf_greedy_logits(
    adapter: Adapter, ids: list[int], pixels: torch.Tensor, steps: int
) -> list[torch.Tensor]:
    """The unmodified HF model's greedy ``generate`` from ``ids``: the logits it chose each of ``steps``
    tokens from (the prefill's first, then its decode steps through its own KV cache and positions)."""
    import torch

    with torch.no_grad():
        out = adapter.model.generate(
            **adapter.reference_inputs(ids, pixels),
            max_new_tokens=steps,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
    return [step[0] for step in out.logits]


def hf_logits_at(
    adapter: Adapter, ids: list[int], pixels: torch.Tensor, position: torch.Tensor
) -> torch.Tensor:
    """The HF model's last-token logits for ``ids`` at explicit positions (``[N]`` or ``[3, N]``)."""
    import torch

    position_ids = position[None] if position.dim() == 1 else position[:, None]
    with torch.no_grad():
        out = adapter.model(**adapter.reference_inputs(ids, pixels), position_ids=position_ids)
    return out.logits[0, -1]  # type: ignore[no-any-return]


_HF_REFERENCE: weakref.WeakKeyDictionary[Adapter, list[torch.Tensor]] = weakref.WeakKeyDictionary()


def _hf_reference(adapter: Adapter, ids: list[int], pixels: torch.Tensor) -> list[torch.Tensor]:
    """:func:`hf_greedy_logits` of the contract prompt, computed once per adapter."""
    if adapter not in _HF_REFERENCE:
        _HF_REFERENCE[adapter] = hf_greedy_logits(adapter, ids, pixels, CONTRACT_STEPS)
    assert len(_HF_REFERENCE[adapter]) == CONTRACT_STEPS, "the HF model stopped early (end of sequence)"
    return _HF_REFERENCE[adapter]


def _at_step(step: int) -> Callable[[str], str]:
    return lambda message: f"step {step}: {message}"


def _plan_id(plan: tuple[str, float, dict[str, Any]]) -> str:
    name, keep, options = plan
    return name + "".join(f"-{k}{v}" for k, v in options.items()) + f"-{keep:g}"


class AdapterContract:
    """Contract tests, run on each tiny architecture the plugin's ``contract_adapter`` gives. Subclass
    it as ``Test...`` in a test module to collect it."""

    @pytest.mark.parametrize("name", ["none", "random"])
    def test_keep_all_reproduces_the_hf_models_prefill_and_greedy_decode(
        self,
        contract_adapter: Adapter,
        contract_inputs: tuple[list[int], torch.Tensor],
        contract_sample: EncodedSample,
        name: str,
    ) -> None:
        import torch

        from prune_bench.testing import prefill_and_decode

        ids, pixels = contract_inputs
        hf_reference = _hf_reference(contract_adapter, ids, pixels)
        session, _ = build_session(contract_adapter, name, 1.0)
        plan = session.plan(contract_sample.frames)
        pre, ours = prefill_and_decode(contract_adapter, contract_sample, plan, "drop", CONTRACT_STEPS)
        assert len(pre.state) == len(contract_sample.state)
        torch.testing.assert_close(ours[0], hf_reference[0], atol=1e-4, rtol=1e-4)  # the prefill
        state = contract_sample.state
        agree = all(
            torch.allclose(o, r, atol=1e-4, rtol=1e-4) for o, r in zip(ours, hf_reference, strict=True)
        )
        if not agree and int(state.position[..., -1].max()) + 1 != state.next_position:
            # An M-RoPE prompt whose video reaches past its last text position: decoding continues at
            # max + 1 (HF's rope_deltas, what prune-bench follows), where transformers 5.2x's generate
            # continues at last + 1. Check the decode steps at max + 1, then mark the difference.
            tokens = [int(o.argmax()) for o in ours]
            for step in range(1, CONTRACT_STEPS):
                extra = torch.arange(step, device=state.position.device) + state.next_position
                extra = extra if state.position.dim() == 1 else extra[None].expand(3, -1)
                position = torch.cat([state.position, extra], dim=-1)
                expected = hf_logits_at(contract_adapter, ids + tokens[:step], pixels, position)
                torch.testing.assert_close(ours[step], expected, atol=1e-4, rtol=1e-4)
            pytest.xfail(
                "decode positions: the video's M-RoPE positions reach past the prompt's last text position, "
                "and this transformers version's generate continues at last + 1 while its rope_deltas (and "
                "prune-bench) continue at max + 1; the decode steps match HF at max + 1"
            )
        for step, (o, r) in enumerate(zip(ours, hf_reference, strict=True)):
            torch.testing.assert_close(o, r, atol=1e-4, rtol=1e-4, msg=_at_step(step))
        assert [int(o.argmax()) for o in ours] == [int(r.argmax()) for r in hf_reference]

    @pytest.mark.parametrize("plan", PRUNING_PLANS, ids=_plan_id)
    def test_drop_mode_equals_mask_mode(
        self,
        contract_adapter: Adapter,
        contract_sample: EncodedSample,
        plan: tuple[str, float, dict[str, Any]],
    ) -> None:
        from prune_bench.testing import assert_drop_equals_mask

        name, keep, options = plan
        session, _ = build_session(contract_adapter, name, keep, **options)
        pre, _ = assert_drop_equals_mask(
            contract_adapter, contract_sample, session.plan(contract_sample.frames), steps=4
        )
        assert pre.state.num_visual < contract_sample.state.num_visual

    @pytest.mark.parametrize("plan", PRUNING_PLANS, ids=_plan_id)
    def test_kept_tokens_keep_their_original_positions_and_layout(
        self,
        contract_adapter: Adapter,
        contract_sample: EncodedSample,
        plan: tuple[str, float, dict[str, Any]],
    ) -> None:
        import torch

        name, keep, options = plan
        session, _ = build_session(contract_adapter, name, keep, **options)
        full, kept = contract_sample.state, session.prefill(contract_sample).state
        assert 0 < kept.num_visual < full.num_visual
        assert torch.equal(kept.position, full.position[..., kept.source])
        for field in ("kind", "frame", "row", "col"):
            assert torch.equal(getattr(kept, field), getattr(full, field)[kept.source]), field
        assert kept.next_position == full.next_position == int(full.position.max()) + 1

    def test_each_layer_caches_exactly_the_tokens_its_attention_saw(
        self, contract_adapter: Adapter, contract_sample: EncodedSample
    ) -> None:
        import torch

        session, _ = build_session(contract_adapter, "random", 0.5, layer=1)
        plan = session.plan(contract_sample.frames)
        pre = contract_adapter.prefill(contract_sample, plan, max_new_tokens=3)
        n = len(contract_sample.state)
        for cache, count in zip(pre.caches, pre.counts, strict=True):
            assert cache.length == count.attn_tokens == cache.layout.source.numel()
        # layers 0 and 1 attend over everything; layer 1's MLP and later layers see only the survivors
        assert pre.counts[0].attn_tokens == pre.counts[1].attn_tokens == n
        assert pre.counts[1].mlp_tokens == len(pre.state) == pre.caches[2].length < n
        assert torch.equal(pre.caches[-1].layout.source, pre.state.source)

    @pytest.mark.parametrize("site", ["post", "pre"])
    def test_last_token_attention_equals_the_hf_models_eager_attention(
        self,
        contract_adapter: Adapter,
        contract_inputs: tuple[list[int], torch.Tensor],
        contract_sample: EncodedSample,
        site: str,
    ) -> None:
        # "post": the rows the layer's attention computed; "pre": rows recomputed from the layer's own
        # q/k projections before it attends (the queries asked for only), as PyramidDrop's stages ask
        import torch

        from prune_bench.core.stages import PruningPlan, Stage

        captured: dict[int, torch.Tensor] = {}

        def spy(state: Any, ctx: Any) -> Any:
            captured[ctx.layer] = ctx.last_token_attention(state, num_queries=2)
            return state

        layers = range(contract_adapter.runner.num_layers)
        stages = [Stage("spy", "layer", spy, layer=i, site=site) for i in layers]  # type: ignore[arg-type]
        plan = PruningPlan.of(stages, len(layers))
        contract_adapter.prefill(contract_sample, plan)
        # The whole HF model on the processor's inputs, not its language model on our embeddings: what a
        # model adds inside its LM (Qwen3-VL's DeepStack features after the first layers) is in the reference.
        ids, pixels = contract_inputs
        lm = contract_adapter.lm
        previous = lm.config._attn_implementation
        lm.config._attn_implementation = "eager"
        try:
            with torch.no_grad():
                out = contract_adapter.model(
                    **contract_adapter.reference_inputs(ids, pixels), output_attentions=True
                )
        finally:
            lm.config._attn_implementation = previous
        for i in layers:
            expected = out.attentions[i][0, :, -2:, :].float()
            torch.testing.assert_close(captured[i], expected, atol=1e-5, rtol=1e-4)

    @pytest.mark.parametrize(
        "frames", [None, CONTRACT_FRAMES, 5], ids=["contract-video", "synthetic-16", "synthetic-5"]
    )
    def test_model_info_describes_the_encoded_layout(
        self, contract_adapter: Adapter, contract_sample: EncodedSample, frames: int | None
    ) -> None:
        import torch

        from prune_bench.core.state import TokenKind

        if frames is None:
            sample, frames = contract_sample, CONTRACT_FRAMES
        else:
            sample = contract_adapter.encode_synthetic(frames, 12, capture_vision=False)
        info, st = contract_adapter.model_info(frames), sample.state
        assert sample.frames == frames  # input frames, whatever the layout makes of them
        assert info.family == contract_adapter.name
        assert (info.num_layers, info.hidden_size) == (
            contract_adapter.runner.num_layers,
            st.hidden.shape[-1],
        )
        assert st.num_frames == info.num_frames
        assert math.prod(st.frame_grid) == info.tokens_per_frame
        assert st.num_visual == info.num_frames * info.tokens_per_frame
        per_frame = torch.bincount(st.frame[st.visual_index], minlength=info.num_frames)
        assert per_frame.tolist() == [info.tokens_per_frame] * info.num_frames
        # the video's placeholders are its tokens: visual ones and any newline token
        n_video = contract_adapter.video_token_count(frames)
        assert contract_adapter.video_span(n_video).count(contract_adapter.video_token_id) == n_video
        assert int((st.kind != TokenKind.TEXT).sum()) == n_video

    def test_capabilities_are_honest(self, contract_adapter: Adapter, contract_sample: EncodedSample) -> None:
        from prune_bench.core.strategy import BudgetWarning
        from prune_bench.errors import UserError
        from prune_bench.session import Session

        info = contract_adapter.model_info(CONTRACT_FRAMES)
        if "vision_attention" not in info.capabilities:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", BudgetWarning)
                with pytest.raises(UserError, match="needs vision_attention from the model"):
                    Session(contract_adapter, "visionzip", keep=0.3, num_frames=CONTRACT_FRAMES)
            return
        assert contract_sample.vision is not None
        va = contract_sample.vision()
        shape = (info.num_frames, info.tokens_per_frame)
        assert tuple(va.received.shape) == shape and tuple(va.keys.shape[:2]) == shape
        session, _ = build_session(contract_adapter, "visionzip", 0.3)
        result = session.answer(contract_sample)
        assert result.input_retention < 1.0
