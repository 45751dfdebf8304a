"""Avalanche plugins: Mixup, CutMix and GradMix for replay strategies."""

from avalanche_mixplugins.deprecation import moved_names
from avalanche_mixplugins.plugins.base import (
    MixingPlugin,
    MixingStepBatch,
    RandomMixPlugin,
)
from avalanche_mixplugins.plugins.cutmix import CutMixPlugin
from avalanche_mixplugins.plugins.gradmix import GradMixPlugin
from avalanche_mixplugins.plugins.mixup import MixupPlugin
from avalanche_mixplugins.plugins.switch import MixupCutMixPlugin

__getattr__ = moved_names(
    __name__, {"MixedBatch": "avalanche_mixplugins.plugins.base:MixingStepBatch"}
)

__all__ = [
    "CutMixPlugin",
    "GradMixPlugin",
    "MixingPlugin",
    "MixingStepBatch",
    "MixupCutMixPlugin",
    "MixupPlugin",
    "RandomMixPlugin",
]
