"""pytest plugin: the strategy contract (:mod:`prune_bench.contract`) for any strategy package.

Registered under the ``pytest11`` entry point, so installing prune-bench makes it available to every
pytest run (with plugin autoloading off, add ``pytest_plugins = ["prune_bench.pytest_plugin"]`` to a
``conftest.py``). It only adds an option and fixtures; tests run only where a module subclasses
:class:`prune_bench.contract.StrategyContract`.

* ``prune_bench_strategies`` (ini, whitespace-separated or a TOML list) or
  ``--prune-bench-strategies a,b`` (command line, wins): the strategies the contract runs on; unset,
  every registered strategy.
* ``contract_adapter``: a tiny random-weight LLaVA-OneVision (8 layers, 64-pixel frames), built once.
* ``contract_sample``: a 16-frame, two-scene video with a short prompt, encoded by that adapter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from prune_bench.adapters.base import EncodedSample
    from prune_bench.adapters.llava_onevision import LlavaOnevisionAdapter

INI = "prune_bench_strategies"


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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # only the contract's own tests: another project's ``strategy_name`` argument is left alone
    from prune_bench.contract import StrategyContract

    in_contract = metafunc.cls is not None and issubclass(metafunc.cls, StrategyContract)
    if in_contract and "strategy_name" in metafunc.fixturenames:
        metafunc.parametrize("strategy_name", contract_strategies(metafunc.config))


@pytest.fixture(scope="session")
def contract_adapter() -> LlavaOnevisionAdapter:
    from prune_bench.adapters.llava_onevision import LlavaOnevisionAdapter, tiny_llava_onevision_config

    return LlavaOnevisionAdapter.from_config(tiny_llava_onevision_config(num_layers=8, image_size=64), seed=0)


@pytest.fixture(scope="session")
def contract_sample(contract_adapter: LlavaOnevisionAdapter) -> EncodedSample:
    import torch

    from prune_bench.contract import CONTRACT_FRAMES

    frames = CONTRACT_FRAMES
    g = torch.Generator().manual_seed(0)
    size = contract_adapter.config.vision_config.image_size
    scenes = torch.randint(0, 256, (2, size, size, 3), generator=g, dtype=torch.uint8)
    video = torch.cat([scenes[0].expand(frames // 2, -1, -1, -1), scenes[1].expand(frames // 2, -1, -1, -1)])
    video = (video.int() + torch.randint(-20, 21, video.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    video_ids = [contract_adapter.config.video_token_id] * contract_adapter.video_token_count(frames)
    ids = [3, 4, 5, *video_ids, 6, 7, 8, 9]
    return contract_adapter.encode_ids(
        ids, contract_adapter.pixels(video), [10, 11, 12, 13], capture_vision=True
    )
