"""pytest plugin: the strategy contract (:mod:`prune_bench.contract`) for any strategy package, and
the adapter contract (:mod:`prune_bench.adapter_contract`) for any adapter package.

Registered under the ``pytest11`` entry point, so installing prune-bench makes it available to every
pytest run (with plugin autoloading off, add ``pytest_plugins = ["prune_bench.pytest_plugin"]`` to a
``conftest.py``). It only adds an option and fixtures; tests run only where a module subclasses
:class:`prune_bench.contract.StrategyContract` or :class:`prune_bench.adapter_contract.AdapterContract`.

* ``prune_bench_strategies`` (ini, whitespace-separated or a TOML list) or
  ``--prune-bench-strategies a,b`` (command line, wins): the strategies the contract runs on; unset,
  every registered strategy.
* ``contract_adapter``: a tiny random-weight model (8 layers, about 16 tokens a layout frame), built
  once per tiny architecture of every registered adapter (``Adapter.tiny_architectures``, built by
  ``Adapter.tiny``): a test that uses it runs on each, with the architecture's name in its id
  (``[tiny-llava-onevision]``, ``[tiny-qwen2-vl]``, ...).
* ``contract_sample``: a ``CONTRACT_FRAMES``-frame (16 input frames), two-scene video with a short
  prompt, encoded by that adapter (for Qwen2-VL: 8 frame pairs); ``contract_inputs`` is its prompt ids
  and pixels, ``contract_architecture`` the ``(adapter name, architecture name)`` pair.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import torch

    from prune_bench.adapters.base import Adapter, EncodedSample

INI = "prune_bench_strategies"
#: decoder layers of the contracts' tiny models
CONTRACT_LAYERS = 8


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(INI, type="args", default=[], help="strategies prune-bench's contract tests run on")
    parser.addoption(
        "--prune-bench-strategies",
        default=None,
        metavar="NAMES",
        help="comma-separated strategies for prune-bench's contract tests (overrides the ini option)",
    )


def contract_strategies(config: pytest.Config) -> list[str]:
    """The configured strategy names (every registered one when none are configured), each checked to
    be registered."""
    from prune_bench.core.plugins import registry

    option = config.getoption("--prune-bench-strategies")
    names = [n.strip() for n in option.split(",") if n.strip()] if option else list(config.getini(INI))
    registered = registry().strategies
    if not names:
        return sorted(registered)
    missing = [n for n in names if n not in registered]
    if missing:
        raise pytest.UsageError(
            f"{INI} names {', '.join(missing)}, which no installed plugin registers "
            f"(registered: {', '.join(sorted(registered))}); install the package first (pip install -e .)"
        )
    return names


def contract_architectures() -> list[tuple[str, str]]:
    """``(adapter name, tiny architecture name)`` for every registered adapter's tiny architectures."""
    from prune_bench.core.plugins import registry

    adapters = registry().adapters
    return [(name, arch) for name in sorted(adapters) for arch in adapters[name].tiny_architectures]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # only the contract's own tests: another project's ``strategy_name`` argument is left alone
    from prune_bench.contract import StrategyContract

    in_contract = metafunc.cls is not None and issubclass(metafunc.cls, StrategyContract)
    if in_contract and "strategy_name" in metafunc.fixturenames:
        metafunc.parametrize("strategy_name", contract_strategies(metafunc.config))
    # every test that uses the contract's model (through contract_adapter) runs on each tiny architecture
    if "contract_architecture" in metafunc.fixturenames:
        archs = contract_architectures()
        ids = [arch for _, arch in archs]
        metafunc.parametrize("contract_architecture", archs, ids=ids, indirect=True, scope="session")


def build_contract_adapter(architecture: tuple[str, str]) -> Adapter:
    """The tiny random-weight model of ``(adapter name, architecture name)``, at the contracts' size."""
    from prune_bench.core.plugins import registry

    adapter_name, arch = architecture
    return registry().adapters[adapter_name].tiny(arch, num_layers=CONTRACT_LAYERS, seed=0)


def build_contract_inputs(adapter: Adapter) -> tuple[list[int], torch.Tensor]:
    """(prompt ids, pixels) of the contract video: two still scenes with noise, half the frames each,
    with three text ids before the video and four after it."""
    import torch

    from prune_bench.contract import CONTRACT_FRAMES

    frames = CONTRACT_FRAMES
    g = torch.Generator().manual_seed(0)
    height, width = adapter.frame_size
    scenes = torch.randint(0, 256, (2, height, width, 3), generator=g, dtype=torch.uint8)
    video = torch.cat([scenes[0].expand(frames // 2, -1, -1, -1), scenes[1].expand(frames // 2, -1, -1, -1)])
    video = (video.int() + torch.randint(-20, 21, video.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    ids = [3, 4, 5, *adapter.video_span(adapter.video_token_count(frames)), 6, 7, 8, 9]
    return ids, adapter.pixels(video)


@pytest.fixture(scope="session")
def contract_architecture(request: pytest.FixtureRequest) -> tuple[str, str]:
    """``(adapter name, tiny architecture name)`` this test runs on (parametrized by the plugin)."""
    param = getattr(request, "param", None)
    return param if param is not None else contract_architectures()[0]


@pytest.fixture(scope="session")
def contract_adapter(contract_architecture: tuple[str, str]) -> Adapter:
    return build_contract_adapter(contract_architecture)


@pytest.fixture(scope="session")
def contract_inputs(contract_adapter: Adapter) -> tuple[list[int], torch.Tensor]:
    return build_contract_inputs(contract_adapter)


@pytest.fixture(scope="session")
def contract_sample(
    contract_adapter: Adapter, contract_inputs: tuple[list[int], torch.Tensor]
) -> EncodedSample:
    ids, pixels = contract_inputs
    return contract_adapter.encode_ids(ids, pixels, [10, 11, 12, 13], capture_vision=True)
