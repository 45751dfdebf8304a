"""Every bad input gets a clear answer (docs/bad_input.md), on real data.

Cases already covered elsewhere are listed in docs/bad_input.md with their
test; this module holds the others.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from avalanche.benchmarks import nc_benchmark
from avalanche.benchmarks.utils import DataAttribute
from avalanche.core import SupervisedPlugin
from avalanche.training import Naive
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
from nets import make_mlp
from torch import nn
from torch.utils.data import TensorDataset

from avalanche_mixplugins import GradMixPlugin, MixupPlugin
from avalanche_mixplugins.benchmarks import load_digits_tensors, split_digits
from avalanche_mixplugins.checkpoint import load_checkpoint, save_checkpoint
from ssl_ext import (
    SAMPLE_ID,
    FixMatch,
    FlexMatch,
    SemiSupervisedStrategy,
    SoftMatch,
    SSLViews,
    add_sample_ids,
)
from ssl_ext.backbones import create_backbone
from ssl_ext.calibratemix_plugin import CalibrateMixPlugin

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bench():
    return split_digits(n_experiences=5, seed=0)


def naive(model, *plugins, mb=32):
    return Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
        train_mb_size=mb,
        device="cpu",
        plugins=list(plugins),
        evaluator=EvaluationPlugin(loggers=[]),
    )


# ------------------------------------------------------------ mixing plugins
def test_no_linear_head_names_the_full_gradient_space(bench):
    conv_only = nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten())
    with pytest.raises(ValueError, match='grad_space="full"'):
        naive(conv_only, GradMixPlugin(seed=0)).train(bench.train_stream[0])
    # and the suggested option trains that model
    conv_only = nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten())
    plugin = GradMixPlugin(seed=0, grad_space="full")
    strategy = naive(conv_only, ReplayPlugin(mem_size=40), plugin)
    for exp in bench.train_stream[:2]:
        strategy.train(exp)
    assert plugin.scored_pairs.any()


def test_labels_outside_the_outputs_fail_before_the_criterion(bench):
    exp = next(e for e in bench.train_stream if max(e.classes_in_this_experience) >= 2)
    with pytest.raises(ValueError, match="outside the model's 2 outputs"):
        naive(make_mlp(num_classes=2), MixupPlugin(seed=0)).train(exp)


def test_one_sample_batches_add_no_mixed_loss(bench):
    data = bench.train_stream[0]
    plugin = MixupPlugin(seed=0)
    model = make_mlp()
    strategy = naive(model, plugin, mb=1)
    strategy.train(data)
    assert plugin.last_loss is None  # nothing to pair with
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_single_class_batches_train(bench):
    single = split_digits(n_experiences=10, seed=0)
    plugin = GradMixPlugin(seed=0)
    strategy = naive(make_mlp(), ReplayPlugin(mem_size=40), plugin)
    for exp in single.train_stream[:2]:
        assert len(exp.classes_in_this_experience) == 1
        strategy.train(exp)
    assert plugin.last_loss is not None and torch.isfinite(plugin.last_loss)
    assert torch.isfinite(plugin.pair_scores).all()


def test_empty_buffer_warns_and_says_to_add_replay(bench, tmp_path):
    plugin = GradMixPlugin(seed=0)
    strategy = naive(make_mlp(), ReplayPlugin(mem_size=0), plugin)
    with pytest.warns(RuntimeWarning, match=r"ReplayPlugin\(mem_size > 0\)"):
        for exp in bench.train_stream[:2]:
            strategy.train(exp)
    assert not plugin.scored_pairs.any()
    # an empty buffer is also saved and restored
    save_checkpoint(tmp_path / "c.pt", strategy)
    fresh = naive(make_mlp(), ReplayPlugin(mem_size=0), GradMixPlugin(seed=0))
    assert load_checkpoint(tmp_path / "c.pt", fresh)["next_experience"] == 2
    assert len(fresh.plugins[0].storage_policy.buffer) == 0


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
def ssl_bench(n_per_class=4, classes=range(10), n_experiences=1):
    x_tr, y_tr, x_te, y_te = load_digits_tensors()
    x_tr, x_te = F.pad(x_tr, (4, 4, 4, 4)), F.pad(x_te, (4, 4, 4, 4))
    lab = torch.cat([torch.nonzero(y_tr == c)[:n_per_class, 0] for c in classes])
    train = TensorDataset(x_tr[lab], y_tr[lab])
    train.targets = y_tr[lab].tolist()
    keep = torch.isin(y_te, torch.tensor(list(classes)))
    test = TensorDataset(x_te[keep][:40], y_te[keep][:40])
    test.targets = y_te[keep][:40].tolist()
    bench = nc_benchmark(
        train,
        test,
        n_experiences,
        task_labels=False,
        seed=0,
        class_ids_from_zero_in_each_exp=False,
    )
    return bench, x_tr


def cnn(num_classes=10, batch_norm=True):
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8) if batch_norm else nn.Identity(),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, num_classes),
    )


def ssl(model, unlabeled, plugins=(), **kwargs):
    kwargs.setdefault("train_mb_size", 8)
    kwargs.setdefault("mu", 2)
    kwargs.setdefault("train_iterations", 4)
    return SemiSupervisedStrategy(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.03),
        unlabeled=unlabeled,
        views=SSLViews(flip=False, group_size=8),
        plugins=list(plugins),
        evaluator=EvaluationPlugin(loggers=[]),
        **kwargs,
    )


def test_ssl_labels_outside_the_outputs():
    b, x = ssl_bench()
    strategy = ssl(cnn(num_classes=3), TensorDataset(x[:100]))
    with pytest.raises(ValueError, match="outside the model's 3 outputs"):
        strategy.train(b.train_stream[0])


def test_ssl_one_sample_single_class_batches():
    b, x = ssl_bench(n_per_class=3, classes=[7])
    model = cnn()
    strategy = ssl(model, TensorDataset(x[:50]), train_mb_size=1, mu=1)
    strategy.train(b.train_stream[0])
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
    b, x = ssl_bench()
    model = cnn(batch_norm=False)  # keeps the NaN in its own row
    cm = CalibrateMixPlugin(mode="fast", warmup=0, seed=0)
    strategy = ssl(
        model,
        TensorDataset(x[:200]),
        plugins=[Poison("unlabeled"), cm],
        algorithm=algorithm,
        algorithm_kwargs={"threshold": 0.1} if algorithm == "flexmatch" else None,
    )
    with pytest.warns(RuntimeWarning, match="left out of the pseudo-labelling"):
        strategy.train(b.train_stream[0])
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
    b, x = ssl_bench()
    model = cnn()
    strategy = ssl(model, TensorDataset(x[:200]), plugins=[Poison("labeled")])
    with pytest.warns(RuntimeWarning, match="optimizer step is skipped"):
        strategy.train(b.train_stream[0])
    assert strategy.skipped_steps == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())
    for value in strategy.pseudo_labeler.state_dict().values():
        assert torch.isfinite(value.float()).all()


def test_unlabeled_smaller_than_one_batch_warns():
    b, x = ssl_bench()
    strategy = ssl(cnn(), TensorDataset(x[:5]))
    with pytest.warns(RuntimeWarning, match="fewer than one unlabeled batch of"):
        strategy.train(b.train_stream[0])
    assert strategy.clock.train_iterations == 4


def test_empty_unlabeled_dataset():
    b, _ = ssl_bench()
    strategy = ssl(cnn(), TensorDataset(torch.zeros(0, 1, 16, 16)))
    with pytest.raises(ValueError, match="unlabeled dataset of experience 0 is empty"):
        strategy.train(b.train_stream[0])


def test_colliding_sample_ids_are_refused():
    b, x = ssl_bench()
    exp = b.train_stream[0]
    n = len(exp.dataset)
    with pytest.raises(ValueError, match="collide"):
        add_sample_ids(exp.dataset, ids=[0] * n)
    # ids set by other means are checked when training
    dup = exp.dataset.update_data_attribute(
        SAMPLE_ID, DataAttribute([i // 2 for i in range(n)], SAMPLE_ID, True)
    )
    exp._dataset = dup
    with pytest.raises(ValueError, match="collide"):
        ssl(cnn(), TensorDataset(x[:100])).train(exp)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: CalibrateMixPlugin(alpha=0.0), "alpha"),
        (lambda: FixMatch(threshold=1.5), "threshold"),
        (lambda: SoftMatch(n_sigma=-1.0), "n_sigma"),
        (
            lambda: ssl(cnn(), TensorDataset(torch.zeros(4, 1, 16, 16)), lambda_u=-1.0),
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
