"""Models placed across devices (``--device-map``, adapters/placement.py): the decoder loop follows each
layer's device, moving what it carries only at device boundaries, and gives what one device gives.

A CPU machine has one device, so the loading tests place every module on ``cpu`` through an explicit
device map (the same loading and per-layer device handling), and the boundary tests fake the devices:
the runner's placement names ``cpu``, ``cpu:0``, ``cpu:1`` and ``cpu:2``, which torch treats as distinct
devices while every tensor stays in host memory, so each move really runs and is seen, and the results
must equal the single-device run bit for bit. tests/gpu/test_device_map_cuda.py splits a model across
two GPUs."""

from __future__ import annotations

import json
import sys
import warnings
from collections import Counter

import pytest
import torch

from prune_bench.adapters import decoder as decoder_module
from prune_bench.adapters.graph_decode import GraphPool, GraphStep
from prune_bench.adapters.llava_onevision import LlavaOnevisionAdapter
from prune_bench.adapters.loading import load_adapter
from prune_bench.adapters.placement import (
    Placement,
    check_placement,
    parse_device_map,
    random_model_on_device_map,
)
from prune_bench.adapters.qwen2_vl import Qwen2VLAdapter
from prune_bench.core.plugins import registry
from prune_bench.core.stages import PruningPlan
from prune_bench.core.timing import Clock
from prune_bench.errors import UserError
from prune_bench.testing import prefill_and_decode

pytest.importorskip("accelerate")

FRAMES = 4
STEPS = 4
CPU = torch.device("cpu")
FAKE = (torch.device("cpu", 0), torch.device("cpu", 1), torch.device("cpu", 2))
#: 8 layers: two boundaries inside the model (before layers 2 and 5), the LM head on a device of its own
SPLIT = Placement(
    embed=CPU,
    layers=(CPU, CPU, FAKE[0], FAKE[0], FAKE[0], FAKE[1], FAKE[1], FAKE[1]),
    norm=FAKE[1],
    head=FAKE[2],
)


def _plan(adapter, spec: str) -> PruningPlan:
    info = adapter.model_info(FRAMES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a budget a method cannot reach exactly is not the point here
        strategy = registry().strategy(spec).for_budget(0.4, "layer-average", info)
    return PruningPlan.of(strategy.stages(info), info.num_layers)


@pytest.fixture(scope="module")
def tiny():
    adapter = LlavaOnevisionAdapter.tiny(num_layers=8)
    return adapter, adapter.encode_synthetic(FRAMES, 12, capture_vision=True)


class MoveLog:
    """What crosses a (fake) device boundary, in order with the parts of the model that ran: every
    ``Tensor.to`` onto a fake device, each layer's input norm, the final norm and the LM head."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, runner) -> None:
        self.events: list[tuple] = []
        self.state_moves: list[torch.device] = []
        self._handles = []
        for i, layer in enumerate(runner.layers):
            self._handles.append(layer.input_layernorm.register_forward_pre_hook(self._mark("layer", i)))
        self._handles.append(runner.norm.register_forward_pre_hook(self._mark("norm", None)))
        self._handles.append(runner.lm_head.register_forward_pre_hook(self._mark("head", None)))
        original_to = torch.Tensor.to
        events = self.events

        def to(tensor, *args, **kwargs):
            for arg in (*args, kwargs.get("device")):
                if isinstance(arg, torch.device) and arg in FAKE:
                    events.append(("to", arg, tuple(tensor.shape)))
            return original_to(tensor, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, "to", to)
        original_move = decoder_module.move_state

        def move_state(state, device):
            self.state_moves.append(device)
            return original_move(state, device)

        monkeypatch.setattr(decoder_module, "move_state", move_state)

    def _mark(self, what: str, index: int | None):
        return lambda module, args: self.events.append((what, index))

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()

    def assert_moves_only_at_boundaries(self, where: Placement, passes: int, hidden: int) -> None:
        """Every move onto a fake device comes right before a part placed there that starts a new
        device (a boundary layer, the final norm or the LM head), and each of ``passes`` runs through
        the model (a prefill, each decode step) crossed every boundary onto a fake device once, moving
        the hidden states (a tensor of ``hidden`` columns) with it."""
        boundaries = set(where.boundaries())
        device_of = {("layer", i): d for i, d in enumerate(where.layers)}
        device_of[("norm", None)], device_of[("head", None)] = where.norm, where.head
        crossings = {("layer", b) for b in boundaries}
        crossings |= {("norm", None)} if where.norm != where.layers[-1] else set()
        crossings |= {("head", None)} if where.head != where.norm else set()
        pending: set[torch.device] = set()
        widths: set[int] = set()
        crossed: Counter[tuple] = Counter()
        for event in self.events:
            if event[0] == "to":
                pending.add(event[1])
                widths.add(event[2][-1] if event[2] else 0)
                continue
            if pending:
                assert event in crossings, f"a move onto {pending} before {event}, not a device boundary"
                assert pending == {device_of[event]}, f"moved onto {pending} before {event}"
                assert hidden in widths, f"the hidden states did not move before {event}"
                crossed[event] += 1
                pending, widths = set(), set()
        assert not pending, f"moved onto {pending} and nothing ran there"
        assert crossed == {c: passes for c in crossings if device_of[c] in FAKE}


@pytest.mark.parametrize("mode", ["drop", "mask"])
@pytest.mark.parametrize("spec", ["visionzip", "fastv", "dycoke", "none"])
def test_split_model_equals_one_device_and_moves_only_at_boundaries(tiny, monkeypatch, spec, mode):
    adapter, sample = tiny
    plan = _plan(adapter, spec)
    pre_one, logits_one = prefill_and_decode(adapter, sample, plan, mode, STEPS)
    assert pre_one.placement is not None and pre_one.placement.single

    monkeypatch.setattr(adapter.runner, "placement", lambda: SPLIT)
    log = MoveLog(monkeypatch, adapter.runner)
    try:
        pre_split, logits_split = prefill_and_decode(adapter, sample, plan, mode, STEPS)
    finally:
        log.close()
    assert pre_split.placement == SPLIT
    for one, split in zip(logits_one, logits_split, strict=True):
        assert torch.equal(one, split)
    assert torch.equal(pre_one.state.source, pre_split.state.source)
    assert [c.attn_tokens for c in pre_one.counts] == [c.attn_tokens for c in pre_split.counts]
    # the prefill moves its token state once per boundary, onto the boundary's device
    assert log.state_moves == [SPLIT.layers[b] for b in SPLIT.boundaries()] == [FAKE[0], FAKE[1]]
    log.assert_moves_only_at_boundaries(SPLIT, passes=STEPS, hidden=adapter.config.text_config.hidden_size)  # the prefill and STEPS - 1 decode steps


def test_decode_stage_choice_crosses_a_boundary(tiny, monkeypatch):
    """DyCoke's decode stage chooses at its layer; its choice (the visible sources) moves with the token
    onto the next device, where the later layers restrict their attention by it."""
    adapter, sample = tiny
    plan = _plan(adapter, "dycoke")
    (stage,) = plan.decode
    assert 0 < stage.layer < 5  # before the boundary at layer 5: its choice must cross it
    monkeypatch.setattr(adapter.runner, "placement", lambda: SPLIT)
    pre = adapter.prefill(sample, plan, mode="drop", max_new_tokens=2)
    log = MoveLog(monkeypatch, adapter.runner)
    try:
        adapter.runner.decode_step(int(pre.logits.argmax()), pre.state.next_position, 0, pre, plan, Clock(CPU))
    finally:
        log.close()
    moved = [e for e in log.events if e[0] == "to" and e[1] == FAKE[1]]
    chosen = [e for e in moved if len(e[2]) == 1 and e[2][0] > 1]  # the visible sources, [k]
    assert len(chosen) == 1


@pytest.mark.parametrize("mode", ["drop", "mask"])
def test_static_buffer_decode_follows_the_split(tiny, monkeypatch, mode):
    """graph_decode.py's step (eagerly, capture=False) keeps each layer's buffers on its device and
    gives the eager loop's logits; graphs themselves run only on one device."""
    adapter, sample = tiny
    plan = _plan(adapter, "dycoke")
    _, eager = prefill_and_decode(adapter, sample, plan, mode, STEPS)
    monkeypatch.setattr(adapter.runner, "placement", lambda: SPLIT)
    pre = adapter.runner.prefill(sample.state, plan, mode=mode, max_new_tokens=STEPS)
    assert GraphPool().step_for(adapter.runner, pre, plan) is None  # several devices: the eager loop
    with pytest.raises(ValueError, match="one device"):
        GraphStep(adapter.runner, pre, plan, capture=True)
    step = GraphStep(adapter.runner, pre, plan, capture=False)
    step.load(pre, plan)
    assert set(step.steps) == {CPU, FAKE[0], FAKE[1]}
    clock, logits = Clock(pre.logits.device), [pre.logits]
    for i in range(STEPS - 1):
        logits.append(step(int(logits[-1].argmax()), pre.state.next_position + i, i, pre, clock))
    for a, b in zip(eager, logits, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------- loading
def _layerwise_map(num_layers: int, device: str = "cpu") -> dict[str, str]:
    return {
        "model.vision_tower": device,
        "model.multi_modal_projector": device,
        "model.image_newline": device,
        "model.language_model.embed_tokens": device,
        **{f"model.language_model.layers.{i}": device for i in range(num_layers)},
        "model.language_model.norm": device,
        "model.language_model.rotary_emb": device,
        "lm_head": device,
    }


def test_shipped_model_loads_through_a_device_map_and_answers_as_without(tmp_path, monkeypatch):
    path = tmp_path / "map.json"
    path.write_text(json.dumps(_layerwise_map(8)))
    plain, _ = load_adapter(None, "cpu")
    mapped, _ = load_adapter(None, "cpu", str(path))
    assert mapped.runner.placement().single
    sample = plain.encode_synthetic(FRAMES, 12, capture_vision=True)
    moves: list[torch.device] = []
    original = decoder_module.move_state
    monkeypatch.setattr(decoder_module, "move_state", lambda s, d: moves.append(d) or original(s, d))
    plan = _plan(plain, "fastv")
    _, expected = prefill_and_decode(plain, sample, plan, "drop", STEPS)
    _, got = prefill_and_decode(mapped, mapped.encode_synthetic(FRAMES, 12, capture_vision=True), plan, "drop", STEPS)
    for a, b in zip(expected, got, strict=True):
        assert torch.equal(a, b)
    assert moves == []  # one device: nothing moves


def test_random_weights_are_made_on_the_mapped_devices():
    config = Qwen2VLAdapter.tiny_architectures["tiny-qwen2-vl"](num_layers=4)
    mapping = {
        "model.visual": "cpu",
        "model.language_model": "cpu",
        "lm_head": "cpu",
    }
    from transformers import Qwen2VLForConditionalGeneration

    model = random_model_on_device_map(Qwen2VLForConditionalGeneration, config, mapping, torch.float32, 0, "sdpa")
    assert all(p.device == CPU for p in model.parameters())
    assert all(b.device == CPU for b in model.buffers())
    rotary = model.model.language_model.rotary_emb
    assert torch.isfinite(rotary.inv_freq).all() and rotary.inv_freq.abs().sum() > 0  # computed, not empty
    adapter = Qwen2VLAdapter(model, frame_size=(32, 32))
    sample = adapter.encode_synthetic(FRAMES, 12, capture_vision=False)
    _, logits = prefill_and_decode(adapter, sample, _plan(adapter, "fastv"), "drop", 2)
    assert all(torch.isfinite(x).all() for x in logits)


@pytest.mark.parametrize(
    ("adapter_cls", "arch", "billions"),
    [(LlavaOnevisionAdapter, "llava-onevision-72b", 73.18), (Qwen2VLAdapter, "qwen2.5-vl-72b", 73.41)],
)
def test_72b_shapes_build_on_the_meta_device_with_their_parameter_count(adapter_cls, arch, billions):
    from transformers import AutoModelForImageTextToText

    config = adapter_cls.architectures[arch]()
    text = config.text_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (
        8192,
        80,
        64,
        8,
    )
    with torch.device("meta"):
        model = AutoModelForImageTextToText._model_mapping[type(config)]._from_config(config, dtype=torch.bfloat16)
    count = sum(p.numel() for p in model.parameters()) / 1e9
    assert 72 < count < 74
    assert count == pytest.approx(billions, abs=0.01)


# ---------------------------------------------------------------------------------- errors
def test_device_map_without_accelerate_is_one_line_naming_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "accelerate", None)
    with pytest.raises(UserError, match="pip install accelerate"):
        parse_device_map("auto")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not readable JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"lm_head": "disk"}', "disk is not supported|offloading to disk"),
        ('{"lm_head": "tpu:7"}', "unknown device"),
    ],
)
def test_a_bad_device_map_file_is_one_line(tmp_path, content, message):
    path = tmp_path / "map.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        parse_device_map(str(path))


def test_a_device_map_under_data_parallel_ranks_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="torchrun"):
        parse_device_map("auto")


def test_a_device_map_that_is_neither_auto_nor_a_file_is_refused(tmp_path):
    with pytest.raises(UserError, match="auto"):
        parse_device_map(str(tmp_path / "missing.json"))
    assert parse_device_map("auto") == "auto"


def test_offloaded_modules_are_refused():
    model = torch.nn.Linear(2, 2)
    model.hf_device_map = {"a": 0, "b": "cpu"}
    with pytest.raises(UserError, match="offloads modules to cpu"):
        check_placement(model)


# ------------------------------------------------------------------------------------- speed
def run_cli(*args: str):
    from click.testing import CliRunner

    from prune_bench.cli.main import cli

    return CliRunner().invoke(cli, list(args))


def test_speed_builds_a_random_model_through_the_device_map(tmp_path):
    out = tmp_path / "speed"
    result = run_cli("speed", "random", "--arch", "tiny-llava-onevision", "--device-map", "auto", "--frames", "2",
                     "--repeats", "1", "--warmup", "0", "--decode-tokens", "2", "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "placed by --device-map auto" in result.output
    rows = {r["strategy"]: r for r in json.loads((out / "speed.json").read_text())["rows"]}
    assert set(rows) == {"none", "random"} and rows["random"]["ideal_speedup"] > 1


def test_speed_refuses_device_and_device_map_together():
    result = run_cli("speed", "fastv", "--arch", "tiny-llava-onevision", "--device", "cpu", "--device-map", "auto")
    assert result.exit_code != 0 and "not both" in str(result.exception or result.output)
