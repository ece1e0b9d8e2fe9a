"""One colour per strategy and one marker per variant, the same in every figure.

A built-in strategy has a fixed colour and marker (:data:`STRATEGY_STYLES`); a plugin or a
combination one picked by a hash of its name, so it keeps them from one report to the next. An
ablation variant (``hieravid[segment_level=false]``, see :func:`~prune_bench.report.data.split_variant`)
keeps its strategy's colour, with a marker of its own: the variants of a strategy among the names a
figure shows are numbered in sorted order over the markers other than the strategy's. Every figure of
one report shows either all of a strategy's variants or none of them (the headline figures show them
only when the strategy itself did not run, the ablation figure only when it did), so a variant has
the same marker in every figure it appears in.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

from prune_bench.report.data import REFERENCE, split_variant

REFERENCE_STYLE: dict[str, Any] = {"color": "0.4", "linestyle": "--", "linewidth": 1.2}

#: Colour and marker of each built-in strategy, the same in every figure; the headline method red.
STRATEGY_STYLES: dict[str, tuple[str, str]] = {
    "hieravid": ("#d62728", "o"),
    "fastv": ("#1f77b4", "s"),
    "visionzip": ("#2ca02c", "^"),
    "dycoke": ("#ff7f0e", "D"),
    "pdrop": ("#9467bd", "v"),
    "divprune": ("#8c564b", "P"),
    "framefusion": ("#e377c2", "X"),
    "fastvid": ("#17becf", "<"),
    "vispruner": ("#bcbd22", ">"),
    "prunevid": ("#393b79", "h"),
    "holitom": ("#637939", "p"),
    "random": ("#7b4173", "d"),
    "uniform": ("#8c6d31", "*"),
}
#: For strategies this table does not know (plugins, combinations): picked by a hash of the name, so a
#: name keeps its colour from one report to the next.
_EXTRA_COLOURS = (
    "#5254a3",
    "#8ca252",
    "#bd9e39",
    "#ad494a",
    "#9c9ede",
    "#6b6ecf",
    "#e7ba52",
    "#d6616b",
    "#ce6dbd",
    "#3182bd",
)
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "*")


def strategy_style(name: str) -> dict[str, Any]:
    """Colour, marker and line style of strategy ``name`` (``none`` gets the reference style); a
    variant alone gets its strategy's colour and the first marker left (:func:`strategy_styles` numbers
    the variants of a figure)."""
    return strategy_styles([name])[name]


def strategy_styles(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The style of each of ``names``, variants told apart by marker (see the module docstring)."""
    names = sorted(set(names))
    variants: dict[str, list[str]] = {}
    for name in names:
        if (split := split_variant(name)) is not None:
            variants.setdefault(split[0], []).append(name)
    out = {name: _plain_style(name) for name in names if split_variant(name) is None}
    for strategy, members in variants.items():
        base = _plain_style(strategy)
        markers = [m for m in _MARKERS if m != base["marker"]]
        for i, name in enumerate(members):
            out[name] = {"color": base["color"], "marker": markers[i % len(markers)], "linestyle": ":"}
    return out


def _plain_style(name: str) -> dict[str, Any]:
    if name == REFERENCE:
        return dict(REFERENCE_STYLE)
    if name in STRATEGY_STYLES:
        colour, marker = STRATEGY_STYLES[name]
        return {"color": colour, "marker": marker, "linestyle": "-"}
    h = zlib.crc32(name.encode())
    return {
        "color": _EXTRA_COLOURS[h % len(_EXTRA_COLOURS)],
        "marker": _MARKERS[(h // len(_EXTRA_COLOURS)) % len(_MARKERS)],
        "linestyle": "--",  # dashed: not one of the built-ins
    }
