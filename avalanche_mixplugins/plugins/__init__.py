"""Avalanche plugins: Mixup, CutMix and GradMix for replay strategies."""

from avalanche_mixplugins.plugins.base import MixedBatch, MixingPlugin
from avalanche_mixplugins.plugins.cutmix import CutMixPlugin
from avalanche_mixplugins.plugins.gradmix import GradMixPlugin
from avalanche_mixplugins.plugins.mixup import MixupPlugin

__all__ = ["CutMixPlugin", "GradMixPlugin", "MixedBatch", "MixingPlugin", "MixupPlugin"]
