"""Mixing augmentation plugins for Avalanche replay strategies.

GradMix (gradient-based selective mixup) and the random-pair Mixup and CutMix
baselines, as Avalanche ``SupervisedPlugin`` s that compose with ``Naive`` +
``ReplayPlugin``, ``ER_ACE``, ``ER_AML`` and ``DER``.

    Kim, Hwang, Whang. "GradMix: Gradient-based Selective Mixup for Robust Data
    Augmentation in Class-Incremental Learning". arXiv:2505.08528 (KDD 2026).
"""

from avalanche_mixplugins.plugins import (
    CutMixPlugin,
    GradMixPlugin,
    MixingPlugin,
    MixupPlugin,
)

__version__ = "0.1.0"

__all__ = [
    "CutMixPlugin",
    "GradMixPlugin",
    "MixingPlugin",
    "MixupPlugin",
    "__version__",
]
