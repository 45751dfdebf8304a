"""What the resume tests share: a simulated crash, a plugin drawing from the
global RNG, the evaluator, the GradMix replay run."""

from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
from avalanche.training.plugins import ReplayPlugin
from avalanche.training.storage_policy import (
    ClassBalancedBuffer,
    ExperienceBalancedBuffer,
)

from avalanche_mixplugins import GradMixPlugin
from tests.support.cl import cl_strategy, quiet_evaluator
from tests.support.nets import make_mlp

ACC = "Top1_Acc_Stream/eval_phase/test_stream/Task000"
LOSS = "Loss_Stream/eval_phase/test_stream/Task000"


class Interrupted(Exception):
    """Stands for a crash of the training process."""


class InterruptAt(SupervisedPlugin):
    """Raise :class:`Interrupted` after iteration ``iteration`` of experience ``exp``."""

    def __init__(self, exp: int, iteration: int):
        super().__init__()
        self.exp, self.iteration = exp, iteration

    def after_training_iteration(self, strategy, **kwargs):
        done = strategy.clock.train_exp_iterations + 1
        if (
            strategy.experience.current_experience == self.exp
            and done == self.iteration
        ):
            raise Interrupted


class DrawsAtExperienceStart(SupervisedPlugin):
    """Uses the global RNG when an experience starts (as a plugin initialising
    something at random would), so a resumed run reaches the first iteration
    with another RNG state unless the strategy restores it."""

    def before_training_exp(self, strategy, **kwargs):
        torch.rand(5)


def evaluator():
    """Stream accuracy and loss, no loggers: what a resumed run must reproduce."""
    return quiet_evaluator(accuracy_metrics(stream=True), loss_metrics(stream=True))


def build_replay(policy: str, seed: int):
    """Naive + ``ReplayPlugin`` (an experience- or class-balanced buffer of 60)
    + GradMix on an MLP initialised from ``seed``."""
    torch.manual_seed(seed)
    model = make_mlp()
    storage = (
        ExperienceBalancedBuffer(max_size=60)
        if policy == "experience"
        else ClassBalancedBuffer(max_size=60)
    )
    replay = ReplayPlugin(mem_size=60, storage_policy=storage)
    gradmix = GradMixPlugin(seed=3)
    strategy = cl_strategy(
        "naive",
        model,
        [replay, gradmix],
        momentum=0.9,
        train_epochs=1,
        eval_mb_size=256,
        evaluator=evaluator(),
    )
    return strategy, gradmix, replay
