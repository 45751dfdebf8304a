"""Setups that cannot work are said at the first callback that can know.

A model whose last registered ``nn.Linear`` is not the classifier (GradMix's
``head=``), GradMix without replay, two mixing plugins in one strategy,
Avalanche's default minibatch of one sample, and CalibrateMix outside the
semi-supervised strategy: each gets one message before or at the first
training step, with real Avalanche strategies on split digits.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from avalanche.training import ER_ACE, Naive
from torch import nn

from avalanche_mixplugins import GradMixPlugin, MixupPlugin
from tests.support.cl import cl_strategy


class ProjectedNet(nn.Module):
    """A classifier with a projection head registered after it (its last
    ``nn.Linear``), which the forward computes but does not return."""

    def __init__(self, *, call_projection: bool):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
        self.classifier = nn.Linear(32, 10)
        self.projection = nn.Linear(32, 16)
        self.call_projection = call_projection
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        h = self.body(x)
        if self.call_projection:
            self.embedding = self.projection(h)
        return self.classifier(h)


@pytest.mark.parametrize("call_projection", [False, True])
def test_gradmix_names_the_wrong_head_at_the_first_step(
    digits_benchmark, call_projection
):
    model = ProjectedNet(call_projection=call_projection)
    strategy = cl_strategy("naive_replay", model, [GradMixPlugin(seed=0)])
    with pytest.raises(ValueError) as info:
        strategy.train(digits_benchmark.train_stream[0])
    message = str(info.value)
    assert "'projection'" in message and "head='classifier'" in message
    assert "get_classifier()" in message
    why = "outputs 16 features" if call_projection else "never called it"
    assert why in message
    assert model.calls == 1  # at the first step, on the first experience
    # head= names the classifier: the plugin then trains and scores pairs
    torch.manual_seed(0)
    model = ProjectedNet(call_projection=call_projection)
    gradmix = GradMixPlugin(seed=0, head="classifier")
    strategy = cl_strategy("naive_replay", model, [gradmix])
    for exp in digits_benchmark.train_stream[:2]:
        strategy.train(exp)
    assert gradmix.scored_pairs.any()
    assert gradmix.last_inner is not None and torch.isfinite(gradmix.last_inner).any()


def test_gradmix_head_argument_is_checked():
    with pytest.raises(ValueError, match="head must be None or a layer name"):
        GradMixPlugin(head=3)
    model = ProjectedNet(call_projection=False)
    from avalanche_mixplugins.head import find_linear_head

    with pytest.raises(ValueError, match=r"its linear layers are \['body.1'"):
        find_linear_head(model, "fc")
    assert find_linear_head(model, "classifier")[1] is model.classifier


def test_gradmix_without_replay_warns_before_training(digits_benchmark):
    from tests.support.nets import make_mlp

    strategy = cl_strategy("naive", make_mlp(), [GradMixPlugin(seed=0)])
    with pytest.warns(RuntimeWarning, match="Naive has no replay buffer") as shown:
        strategy.train(digits_benchmark.train_stream[0])
    # before the first experience ends, not after the second
    assert strategy.clock.train_exp_counter == 1
    assert "ReplayPlugin(mem_size=500)" in str(shown[0].message)
    assert strategy.clock.train_exp_iterations > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        cl_strategy("er_ace", make_mlp(), [GradMixPlugin(seed=0)]).train(
            digits_benchmark.train_stream[0]
        )


def test_two_mixing_plugins_are_refused_before_training(digits_benchmark):
    from tests.support.nets import make_mlp

    strategy = cl_strategy(
        "naive_replay", make_mlp(), [MixupPlugin(seed=0), GradMixPlugin(seed=0)]
    )
    with pytest.raises(ValueError, match=r"2 mixing plugins \(MixupPlugin, Grad"):
        strategy.train(digits_benchmark.train_stream[0])
    assert strategy.clock.train_iterations == 0


@pytest.mark.parametrize("kind", ["naive", "er_ace"])
def test_default_minibatch_of_one_is_warned_before_training(digits_benchmark, kind):
    from tests.support.nets import make_mlp

    model = make_mlp()
    options = {"optimizer": torch.optim.SGD(model.parameters(), lr=0.05)}
    if kind == "er_ace":  # train_mb_size not given: Avalanche's default, 1
        strategy = ER_ACE(model=model, mem_size=50, plugins=[MixupPlugin()], **options)
    else:
        strategy = Naive(model=model, plugins=[MixupPlugin()], **options)
    strategy.train_epochs = 0  # the warning comes before any step
    with pytest.warns(RuntimeWarning, match="train_mb_size=1") as shown:
        strategy.train(digits_benchmark.train_stream[0])
    assert "Give train_mb_size=32" in str(shown[0].message)
    assert strategy.clock.train_iterations == 0


def test_calibratemix_outside_the_semi_supervised_strategy(digits_benchmark):
    from ssl_ext import CalibrateMixPlugin
    from tests.support.nets import make_mlp

    strategy = cl_strategy("naive", make_mlp(), [CalibrateMixPlugin()])
    with pytest.raises(ValueError, match="only ssl_ext.SemiSupervisedStrategy") as info:
        strategy.train(digits_benchmark.train_stream[0])
    assert "plugins=[CalibrateMixPlugin(...)]" in str(info.value)
    # raised in before_training: no experience was set up yet
    assert strategy.experience is None
