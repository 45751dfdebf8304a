"""Mixing augmentation plugins for Avalanche replay strategies.

GradMix (gradient-based selective mixup) and the random-pair Mixup and CutMix
baselines, as Avalanche ``SupervisedPlugin`` s that compose with ``Naive`` +
``ReplayPlugin``, ``ER_ACE``, ``ER_AML`` and ``DER``.

    Kim, Hwang, Whang. "GradMix: Gradient-based Selective Mixup for Robust Data
    Augmentation in Class-Incremental Learning". arXiv:2505.08528 (KDD 2026).

The plugin classes are imported on first use, so the pure modules
(:mod:`~avalanche_mixplugins.mixing`, :mod:`~avalanche_mixplugins.pairing`,
:mod:`~avalanche_mixplugins.gradients`, :mod:`~avalanche_mixplugins.calibration`,
:mod:`~avalanche_mixplugins.validation`) load without Avalanche.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from avalanche_mixplugins.plugins import (
        CutMixPlugin,
        GradMixPlugin,
        MixingPlugin,
        MixupCutMixPlugin,
        MixupPlugin,
    )

__version__ = "0.1.0"

_PLUGINS = (
    "CutMixPlugin",
    "GradMixPlugin",
    "MixingPlugin",
    "MixupCutMixPlugin",
    "MixupPlugin",
)


def __getattr__(name: str) -> Any:
    if name in _PLUGINS:
        value = getattr(importlib.import_module("avalanche_mixplugins.plugins"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PLUGINS})


__all__ = [
    "CutMixPlugin",
    "GradMixPlugin",
    "MixingPlugin",
    "MixupCutMixPlugin",
    "MixupPlugin",
    "__version__",
]
