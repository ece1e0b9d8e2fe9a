"""The adapter contract (prune_bench/adapter_contract.py, shared with adapter packages through the
pytest plugin) on every tiny architecture of every registered adapter."""

from __future__ import annotations

from prune_bench.adapter_contract import AdapterContract
from prune_bench.pytest_plugin import contract_architectures


class TestEveryRegisteredAdapter(AdapterContract):
    pass


def test_every_registered_adapter_has_a_tiny_architecture_for_the_contracts():
    from prune_bench.core.plugins import registry

    covered = {adapter for adapter, _ in contract_architectures()}
    assert covered == set(registry().adapters)
    assert ("qwen2_vl", "tiny-qwen2.5-vl") in contract_architectures()
    assert {("qwen3_vl", "tiny-qwen3-vl"), ("qwen3_vl", "tiny-qwen3-vl-moe")} <= set(contract_architectures())
    assert ("internvl", "tiny-internvl3") in contract_architectures()
