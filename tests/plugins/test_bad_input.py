"""Every bad input gets a clear answer (docs/bad_input.md), on real data.

Cases already covered elsewhere are listed in docs/bad_input.md with their
test; this module holds the others.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from avalanche.benchmarks import nc_benchmark
from avalanche.benchmarks.utils import DataAttribute
from avalanche.core import SupervisedPlugin
from avalanche.training import ER_ACE, Naive
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
from nets import make_mlp
from torch import nn
from torch.utils.data import TensorDataset

from avalanche_mixplugins import GradMixPlugin, MixupPlugin
from avalanche_mixplugins.checkpoint import load_checkpoint, save_checkpoint
from avalanche_mixplugins.experiments.datasets import load_digits_tensors
from avalanche_mixplugins.experiments.streams import split_digits
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


# ------------------------------------------- NaN / Inf inside a CL training run
class RecordingGradMix(GradMixPlugin):
    """GradMix that keeps the step's mixed batch (public ``mixed_batch``)."""

    def mixed_batch(self, strategy):
        self.last_batch = super().mixed_batch(strategy)
        return self.last_batch


class Poisoner(SupervisedPlugin):
    """Puts a non-finite value into one place of every third step of the second
    experience: a previous-class input, a current-class input, one row of the
    model's output (a forward hook, so GradMix's capture sees it) or the
    strategy's loss."""

    def __init__(self, site: str):
        super().__init__()
        self.site, self.n, self.poisoned = site, 0, False

    def _on(self, strategy) -> bool:
        return strategy.is_training and strategy.experience.current_experience == 1

    def before_training_exp(self, strategy, **kwargs):
        if self.site == "logits" and not hasattr(self, "_hook"):
            self._hook = strategy.model.register_forward_hook(self._logits)

    def _logits(self, module, args, output):
        if self.poisoned and self.site == "logits":
            output = output.clone()
            output[:, 0] = float("nan")  # one class column: reaches every loss form
            return output
        return None

    def before_training_iteration(self, strategy, **kwargs):
        self.n += 1
        self.poisoned = self._on(strategy) and self.n % 3 == 0

    def before_forward(self, strategy, **kwargs):
        if not self.poisoned or not self.site.startswith("input"):
            return
        old_cls = strategy.experience.classes_in_this_experience
        current = torch.tensor(sorted(old_cls))
        if (
            self.site == "input_buffer"
            and getattr(strategy, "mb_buffer_x", None) is not None
        ):
            x = strategy.mb_buffer_x.clone()
            x[0] = float("nan")
            strategy.mb_buffer_x = x
            return
        x = strategy.mbatch[0].clone()
        is_old = ~torch.isin(strategy.mbatch[1], current)
        rows = torch.nonzero(is_old if self.site == "input_buffer" else ~is_old)
        if len(rows):
            x[int(rows[0, 0])] = (
                float("nan") if self.site == "input_buffer" else float("inf")
            )
            strategy.mbatch[0] = x

    def before_backward(self, strategy, **kwargs):
        if self.poisoned and self.site == "loss":
            strategy.loss = strategy.loss * float("nan")


class SkipNonFiniteSteps(SupervisedPlugin):
    """Zero the gradients of a step that has a non-finite one (as AMP's
    GradScaler skips such steps), so the weights stay finite."""

    def __init__(self):
        super().__init__()
        self.skipped = 0

    def after_backward(self, strategy, **kwargs):
        grads = [p.grad for p in strategy.model.parameters() if p.grad is not None]
        if not all(torch.isfinite(g).all() for g in grads):
            self.skipped += 1
            for g in grads:
                g.zero_()


class TableAudit(SupervisedPlugin):
    """After GradMix (in ``before_backward``), compares the state tables before
    and after the step with the step's inner products."""

    def __init__(self, plugin: RecordingGradMix, poisoner: Poisoner):
        super().__init__()
        self.plugin, self.poisoner = plugin, poisoner
        self.steps: list[dict] = []

    def before_training_iteration(self, strategy, **kwargs):
        self.plugin.last_batch = None
        self.plugin.last_inner = None
        self._scores = self.plugin.pair_scores
        self._seen = self.plugin.scored_pairs

    def before_backward(self, strategy, **kwargs):
        b, inner = self.plugin.last_batch, self.plugin.last_inner
        if b is None or inner is None:
            return
        self.steps.append(
            {
                "poisoned": self.poisoner.poisoned,
                "before": (self._scores, self._seen),
                "after": (self.plugin.pair_scores, self.plugin.scored_pairs),
                "y": b.y.cpu(),
                "y_partner": b.y[b.partner].cpu(),
                "active": b.active.cpu(),
                "inner": inner.cpu(),
            }
        )


@pytest.mark.parametrize("setup", ["naive_replay", "er_ace"])
@pytest.mark.parametrize("site", ["input_buffer", "input_current", "logits", "loss"])
def test_non_finite_values_never_enter_gradmix_state(bench, setup, site):
    """NaN/Inf in a buffer input, a current input, the logits or the loss, on
    every third step of the second experience: the pair-score matrix stays
    finite; a pair's score and seen flag change only with finite evidence of
    that pair in the step (a pair whose candidates all had non-finite inner
    products keeps both); the per-experience history stays finite; the weights
    stay finite."""
    torch.manual_seed(0)
    model = make_mlp()
    plugin = RecordingGradMix(seed=0)
    poisoner = Poisoner(site)
    audit = TableAudit(plugin, poisoner)
    guard = SkipNonFiniteSteps()
    plugins = [poisoner, plugin, audit, guard]
    kw = dict(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
        train_mb_size=32,
        device="cpu",
        evaluator=EvaluationPlugin(loggers=[]),
    )
    if setup == "naive_replay":
        strategy = Naive(plugins=[ReplayPlugin(mem_size=100), *plugins], **kw)
    else:
        strategy = ER_ACE(mem_size=100, batch_size_mem=16, plugins=plugins, **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        for exp in bench.train_stream[:2]:
            strategy.train(exp)
    said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]

    poisoned = [s for s in audit.steps if s["poisoned"]]
    assert len(poisoned) >= 2 and len(audit.steps) > len(poisoned)
    if site != "loss":
        # the poison reached GradMix's inner products on those steps
        assert all(not torch.isfinite(s["inner"]).all() for s in poisoned)
        assert guard.skipped >= len(poisoned)
        # and the mixed term of those steps was left out, not added as NaN
        assert plugin.skipped_steps == len(poisoned)
        assert any("mixed loss is not finite" in m for m in said)  # and said so
    updated_somewhere = False
    for s in audit.steps:
        (s0, seen0), (s1, seen1) = s["before"], s["after"]
        # pair-score table
        assert torch.isfinite(s1).all()
        # evidence per unordered pair: finite inner products of active rows
        n = s1.shape[0]
        finite = s["active"] & torch.isfinite(s["inner"])
        evidence = torch.zeros(n, n, dtype=torch.bool)
        evidence[s["y"][finite], s["y_partner"][finite]] = True
        evidence |= evidence.T.clone()
        grown = seen0.shape[0]
        s1_old, seen1_old = s1[:grown, :grown], seen1[:grown, :grown]
        ev_old = evidence[:grown, :grown]
        # seen mask: set only with finite evidence, never cleared
        assert not (seen1 & ~evidence)[:grown, :grown][~seen0].any()
        assert (seen1_old | ~seen0).all()
        assert not (seen1 & ~evidence)[grown:].any()
        # scores move only with finite evidence
        assert torch.equal(s1_old[~ev_old], s0[~ev_old])
        updated_somewhere |= bool((s1_old != s0).any())
    assert updated_somewhere
    # history table (one entry per experience)
    assert len(plugin.history) == 2
    last = plugin.history[-1]
    assert torch.isfinite(last["scores"]).all()
    assert 0.0 <= last["helpful_fraction"] <= 1.0
    assert all(torch.isfinite(p).all() for p in model.parameters())


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
