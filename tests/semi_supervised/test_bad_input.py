"""Every bad input of the semi-supervised side gets a clear answer
(docs/bad_input.md): pseudo-labelling on tiny batches, the strategy, the
backbones."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from avalanche.benchmarks.utils import DataAttribute
from avalanche.core import SupervisedPlugin
from torch import nn
from torch.utils.data import TensorDataset

from ssl_ext import (
    SAMPLE_ID,
    FixMatch,
    FlexMatch,
    SoftMatch,
    add_sample_ids,
)
from ssl_ext.backbones import create_backbone
from ssl_ext.calibratemix_plugin import CalibrateMixPlugin
from tests.support.nets import two_conv_cnn
from tests.support.semi_supervised import (
    ssl_digits,
    ssl_strategy,
    training_experience,
)


def ssl(model, unlabeled, plugins=(), **kwargs):
    """The tests' strategy, four iterations per experience by default."""
    kwargs.setdefault("train_iterations", 4)
    return ssl_strategy(model, unlabeled, plugins, **kwargs)


# ------------------------------------------------------ pseudo-labelling maths
@pytest.mark.parametrize("n", [0, 1])
def test_pseudo_labellers_on_empty_and_one_sample_batches(n):
    logits = torch.randn(n, 4)
    index = torch.arange(n)
    for labeler in (FixMatch(), SoftMatch(), FlexMatch(num_unlabeled=8)):
        out = labeler(logits, index=index)
        assert out.targets.shape == (n,) and out.weights.shape == (n,)
        for value in labeler.state_dict().values():
            if isinstance(value, torch.Tensor):
                assert torch.isfinite(value.float()).all()


# -------------------------------------------------------------- SSL strategy
def test_ssl_labels_outside_the_outputs():
    bench, unlabeled = ssl_digits(per_class=4, n_test=40, n_unlabeled=100)
    strategy = ssl(two_conv_cnn(num_classes=3), unlabeled)
    with pytest.raises(ValueError, match="outside the model's 3 outputs"):
        strategy.train(bench.train_stream[0])


def test_ssl_one_sample_single_class_batches():
    bench, unlabeled = ssl_digits(
        per_class=3, n_test=40, n_experiences=10, n_unlabeled=50
    )
    (sevens,) = [e for e in bench.train_stream if e.classes_in_this_experience == [7]]
    model = two_conv_cnn()
    strategy = ssl(model, unlabeled, train_mb_size=1, mu=1)
    strategy.train(sevens)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert strategy.skipped_steps == 0


class Poison(SupervisedPlugin):
    """Puts NaN into the first weak unlabeled view, or the first labeled input,
    of every other iteration (before the joint forward)."""

    def __init__(self, where: str):
        super().__init__()
        self.where, self.n = where, 0

    def before_forward(self, strategy, **kwargs):
        self.n += 1
        if self.n % 2:
            return
        if self.where == "unlabeled":
            weak = strategy.mb_ulb_weak.clone()
            weak[0] = float("nan")
            strategy.mb_ulb_weak = weak
        else:
            x = strategy.mbatch[0].clone()
            x[0] = float("inf")
            strategy.mbatch[0] = x


@pytest.mark.parametrize("algorithm", ["softmatch", "flexmatch"])
def test_nan_unlabeled_inputs_never_reach_the_statistics(algorithm):
    bench, unlabeled = ssl_digits(per_class=4, n_test=40, n_unlabeled=200)
    model = two_conv_cnn(batch_norm=False)  # keeps the NaN in its own row
    cm = CalibrateMixPlugin(mode="fast", warmup=0, seed=0)
    strategy = ssl(
        model,
        unlabeled,
        plugins=[Poison("unlabeled"), cm],
        algorithm=algorithm,
        algorithm_kwargs={"threshold": 0.1} if algorithm == "flexmatch" else None,
    )
    with pytest.warns(RuntimeWarning, match="left out of the pseudo-labelling"):
        strategy.train(bench.train_stream[0])
    assert strategy.nonfinite_batches == 2
    # the NaN row poisons the weight gradients (0 * NaN): those steps are skipped
    assert strategy.skipped_steps == 2
    for value in strategy.pseudo_labeler.state_dict().values():
        assert torch.isfinite(value.float()).all()
    for table in (cm.aum.state_dict(), cm.apm.state_dict()):
        for value in table.values():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                assert torch.isfinite(value).all()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_inf_labeled_input_skips_the_step_and_keeps_weights_finite():
    bench, unlabeled = ssl_digits(per_class=4, n_test=40, n_unlabeled=200)
    model = two_conv_cnn()
    strategy = ssl(model, unlabeled, plugins=[Poison("labeled")])
    with pytest.warns(RuntimeWarning, match="optimizer step is skipped"):
        strategy.train(bench.train_stream[0])
    assert strategy.skipped_steps == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())
    for value in strategy.pseudo_labeler.state_dict().values():
        assert torch.isfinite(value.float()).all()


def test_unlabeled_smaller_than_one_batch_warns():
    bench, unlabeled = ssl_digits(per_class=4, n_test=40, n_unlabeled=5)
    strategy = ssl(two_conv_cnn(), unlabeled)
    with pytest.warns(RuntimeWarning, match="fewer than one unlabeled batch of"):
        strategy.train(bench.train_stream[0])
    assert strategy.clock.train_iterations == 4


def test_empty_unlabeled_dataset():
    bench, _ = ssl_digits(per_class=4, n_test=40)
    strategy = ssl(two_conv_cnn(), TensorDataset(torch.zeros(0, 1, 16, 16)))
    with pytest.raises(ValueError, match="unlabeled dataset of experience 0 is empty"):
        strategy.train(bench.train_stream[0])


def test_colliding_sample_ids_are_refused():
    bench, unlabeled = ssl_digits(per_class=4, n_test=40, n_unlabeled=100)
    exp = bench.train_stream[0]
    n = len(exp.dataset)
    with pytest.raises(ValueError, match="collide"):
        add_sample_ids(exp.dataset, ids=[0] * n)
    # ids set by other means are checked when training
    dup = exp.dataset.update_data_attribute(
        SAMPLE_ID, DataAttribute([i // 2 for i in range(n)], SAMPLE_ID, True)
    )
    with pytest.raises(ValueError, match="collide"):
        ssl(two_conv_cnn(), unlabeled).train(training_experience(dup))


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: CalibrateMixPlugin(alpha=0.0), "alpha"),
        (lambda: FixMatch(threshold=1.5), "threshold"),
        (lambda: SoftMatch(n_sigma=-1.0), "n_sigma"),
        (
            lambda: ssl(
                two_conv_cnn(), TensorDataset(torch.zeros(4, 1, 16, 16)), lambda_u=-1.0
            ),
            "lambda_u",
        ),
    ],
)
def test_ssl_bad_hyper_parameters(build, match):
    with pytest.raises(ValueError, match=match):
        build()


# ------------------------------------------------------------------- backbones
def test_unknown_timm_name_lists_close_matches():
    with pytest.raises(ValueError, match="wrn28_2"):
        create_backbone("wrn28_3", num_classes=10)
    assert isinstance(create_backbone("wrn28_2", num_classes=10), nn.Module)


def test_pretrained_without_network_says_what_to_do(monkeypatch):
    import huggingface_hub.constants

    # offline, as without network access, but without waiting for retries
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    try:
        model = create_backbone("resnet10t", pretrained=True, num_classes=10)
    except RuntimeError as err:
        message = str(err)
        assert "pretrained=False" in message and "pretrained_cfg_overlay" in message
    else:
        assert not math.isnan(sum(float(p.sum()) for p in model.parameters()))
        pytest.skip("resnet10t weights are in the local Hugging Face cache")


class StepWatch(SupervisedPlugin):
    """Around each optimizer step: the parameters, momentum buffers, EMA
    teacher and its clock before and after, and timm's own EMA update of the
    teacher as it was before the step (the reference)."""

    def __init__(self):
        super().__init__()
        self.steps = []

    @staticmethod
    def _snap(strategy):
        state = strategy.optimizer.state
        return {
            "params": [p.detach().clone() for p in strategy.model.parameters()],
            "momentum": [
                state[p]["momentum_buffer"].clone()
                for p in strategy.model.parameters()
                if "momentum_buffer" in state.get(p, {})
            ],
            "ema": {k: v.clone() for k, v in strategy.ema.state_dict().items()},
            "ema_steps": strategy.ema_steps,
        }

    def before_update(self, strategy, **kwargs):
        self._before = self._snap(strategy)
        self._reference = copy.deepcopy(strategy.ema)

    def after_update(self, strategy, **kwargs):
        self._reference.update(strategy.model, step=self._before["ema_steps"] + 1)
        reference = self._reference.state_dict()
        self.steps.append((self._before, self._snap(strategy), reference))


def test_a_skipped_step_is_undone_on_the_device_and_the_teacher_follows_timm():
    """With momentum and an EMA teacher with warm-up: a non-finite step
    leaves the weights, the momentum and the teacher exactly as they were;
    every other step averages the teacher as timm's ``ModelEmaV3.update``
    does at that step."""
    bench, unlabeled = ssl_digits(per_class=4, n_test=40, n_unlabeled=200)
    watch = StepWatch()
    strategy = ssl(
        two_conv_cnn(batch_norm=False),  # the forward's BN statistics are not undone
        unlabeled,
        plugins=[Poison("labeled"), watch],
        momentum=0.9,
        ema_decay=0.99,
        ema_warmup=True,
        train_iterations=6,
    )
    with pytest.warns(RuntimeWarning, match="optimizer step is skipped"):
        strategy.train(bench.train_stream[0])
    assert strategy.skipped_steps == 3 and strategy.ema_steps == 3
    assert len(watch.steps) == 6
    for i, (before, after, reference) in enumerate(watch.steps):
        if i % 2:  # poisoned (iterations 2, 4, 6): nothing moved
            assert after["ema_steps"] == before["ema_steps"]
            for key in ("params", "momentum"):
                assert len(after[key]) == len(before[key])
                assert all(map(torch.equal, after[key], before[key])), key
            for key, value in after["ema"].items():
                assert torch.equal(value, before["ema"][key]), key
        else:
            assert after["ema_steps"] == before["ema_steps"] + 1
            assert not all(map(torch.equal, after["params"], before["params"]))
            for key, value in after["ema"].items():
                torch.testing.assert_close(value, reference[key], rtol=1e-6, atol=1e-7)
