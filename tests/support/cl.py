"""Avalanche continual-learning strategies as the tests build them."""

from __future__ import annotations

import torch
from avalanche.training import DER, ER_ACE, ER_AML, Naive
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
from torch import nn

from avalanche_mixplugins import GradMixPlugin

REPLAY_SETUPS = ("naive_replay", "er_ace", "er_aml", "der")
"""Every replay setup the plugins support; ``"naive"`` has no buffer."""


def quiet_evaluator(*metrics) -> EvaluationPlugin:
    """An evaluator of ``metrics`` that prints and writes nothing."""
    return EvaluationPlugin(*metrics, loggers=[])


def cl_strategy(
    setup: str,
    model: nn.Module,
    plugins=(),
    *,
    mem_size: int = 100,
    batch_size_mem: int = 16,
    feature_extractor: nn.Module | None = None,
    lr: float = 0.05,
    momentum: float = 0.0,
    optimizer: torch.optim.Optimizer | None = None,
    evaluator: EvaluationPlugin | None = None,
    **kwargs,
):
    """One of :data:`REPLAY_SETUPS` (or ``"naive"``) on ``model`` with
    ``plugins``: SGD (``lr``, ``momentum``) unless ``optimizer`` is given,
    ``train_mb_size=32`` on the CPU, a :func:`quiet_evaluator` unless
    ``evaluator`` is given; ``kwargs`` go to the strategy.

    Naive + ``ReplayPlugin(mem_size)`` lists the replay plugin first; ER-ACE,
    ER-AML and DER keep ``mem_size`` samples and draw ``batch_size_mem``;
    ER-AML's feature extractor defaults to ``model[:3]`` (the body of
    :func:`tests.support.nets.make_mlp`).
    """
    if optimizer is None:
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    options = {
        "model": model,
        "optimizer": optimizer,
        "train_mb_size": 32,
        "device": "cpu",
        "evaluator": quiet_evaluator() if evaluator is None else evaluator,
    } | kwargs
    plugins = list(plugins)
    memory = {"mem_size": mem_size, "batch_size_mem": batch_size_mem}
    if setup == "naive":
        return Naive(plugins=plugins, **options)
    if setup == "naive_replay":
        return Naive(plugins=[ReplayPlugin(mem_size=mem_size), *plugins], **options)
    if setup == "er_ace":
        return ER_ACE(plugins=plugins, **memory, **options)
    if setup == "er_aml":
        extractor = feature_extractor if feature_extractor is not None else model[:3]
        return ER_AML(feature_extractor=extractor, plugins=plugins, **memory, **options)
    if setup == "der":
        return DER(plugins=plugins, **memory, **options)
    raise ValueError(f"unknown setup {setup!r}")


def replay_storage(strategy):
    """The storage policy of a setup: ``ReplayPlugin``'s, else the strategy's own."""
    for plugin in strategy.plugins:
        if isinstance(plugin, ReplayPlugin):
            return plugin.storage_policy
    return strategy.storage_policy


class RecordingGradMix(GradMixPlugin):
    """GradMix that keeps the step's mixed batch (public ``mixed_batch``)."""

    def mixed_batch(self, strategy):
        self.last_batch = super().mixed_batch(strategy)
        return self.last_batch
