"""CalibrateMix: AUM/APM trackers, split, pairing, mixed loss and the plugin on digits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from avalanche.benchmarks import nc_benchmark
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin
from torch.utils.data import TensorDataset

from avalanche_mixplugins.benchmarks import load_digits_tensors
from ssl_ext.calibratemix import (
    calibratemix_loss,
    dissimilar_partners,
    make_mixed_batch,
    median_split,
    num_candidates,
)
from ssl_ext.calibratemix_plugin import CalibrateMixPlugin
from ssl_ext.dynamics import APMTracker, AUMTracker, margins, pseudo_margins
from ssl_ext.strategy import SemiSupervisedStrategy
from ssl_ext.views import SSLViews

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------ AUM/APM
def test_aum_running_mean_of_margins_only_at_batch_indices():
    aum = AUMTracker(num_samples=5)
    # sample 1 (label 0): margins 2 - 1 = 1, then 0 - 3 = -3  -> AUM -1
    # sample 3 (label 2): margins 4 - 0.5 = 3.5, then 1 - 1 = 0 -> AUM 1.75
    steps = [
        (torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.5, 4.0]]), torch.tensor([0, 2])),
        (torch.tensor([[0.0, 3.0, 1.0], [1.0, 0.0, 1.0]]), torch.tensor([0, 2])),
    ]
    index = torch.tensor([1, 3])
    for logits, y in steps:
        aum.update(logits, y, index)
    assert torch.allclose(aum.value(torch.arange(5)), torch.tensor([0, -1, 0, 1.75, 0]))
    assert aum.count.tolist() == [0, 2, 0, 2, 0]
    # a row with a NaN is skipped; the other row of the batch is written
    aum.update(
        torch.tensor([[float("nan"), 0.0, 0.0], [5.0, 0.0, 0.0]]),
        torch.tensor([0, 0]),
        torch.tensor([1, 4]),
    )
    assert aum.count.tolist() == [0, 2, 0, 2, 1]
    assert aum.value(torch.tensor([1, 4])).tolist() == [-1.0, 5.0]
    assert margins(torch.tensor([[1.0, 3.0, 2.0]]), torch.tensor([1])).item() == 1.0
    aum.grow(7)
    assert aum.num_samples == 7 and aum.value(torch.tensor([6])).item() == 0


def test_apm_schedule_delta_over_one_plus_n():
    apm = APMTracker(num_samples=4, delta=0.997)
    z1 = torch.tensor([[3.0, 1.0, 0.0]])
    pm1 = torch.tensor([[2.0, -2.0, -3.0]])  # top1 - top2 for class 0, z_c - 3 else
    assert torch.equal(pseudo_margins(z1), pm1)
    z2 = torch.tensor([[0.0, 2.0, 1.0]])
    pm2 = torch.tensor([[-2.0, 1.0, -1.0]])
    assert torch.equal(pseudo_margins(z2), pm2)
    idx = torch.tensor([2])
    apm.update(z1, idx)
    expected = 0.997 * pm1  # a = 0.997 / (1 + 0), previous APM 0
    assert torch.allclose(apm.table[2], expected[0])
    apm.update(z2, idx)
    a = 0.997 / 2
    expected = a * pm2 + (1 - a) * expected
    assert torch.allclose(apm.table[2], expected[0])
    assert apm.count.tolist() == [0, 0, 2, 0]
    assert apm.table[[0, 1, 3]].abs().sum() == 0  # other rows untouched
    # value at a class, best class, a non-finite row skipped
    assert apm.value(idx, torch.tensor([1])).item() == pytest.approx(
        expected[0, 1].item()
    )
    values, classes = apm.best(idx)
    assert classes.item() == int(expected[0].argmax())
    before = apm.table.clone()
    apm.update(torch.tensor([[float("inf"), 0, 0], [1.0, 0, 0]]), torch.tensor([2, 0]))
    assert torch.equal(apm.table[2], before[2]) and apm.count.tolist() == [1, 0, 2, 0]
    assert torch.allclose(apm.table[0], 0.997 * torch.tensor([1.0, -1.0, -1.0]))


def test_tracker_state_dicts_half_precision_and_errors():
    apm = APMTracker(num_samples=3, dtype=torch.float16)
    apm.update(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 2]))
    assert apm.table.dtype == torch.float16 and apm.memory_bytes() == 3 * 2 * 2 + 3 * 4
    other = APMTracker(num_samples=3, dtype=torch.float16)
    other.load_state_dict(apm.state_dict())
    assert torch.equal(other.table, apm.table) and torch.equal(other.count, apm.count)
    aum = AUMTracker(num_samples=2)
    aum.update(torch.tensor([[1.0, 0.0]]), torch.tensor([0]), torch.tensor([1]))
    copy = AUMTracker(num_samples=1)
    copy.load_state_dict(aum.state_dict())
    assert torch.equal(copy.value(torch.arange(2)), aum.value(torch.arange(2)))
    with pytest.raises(ValueError, match="delta"):
        APMTracker(num_samples=3, delta=0)
    with pytest.raises(ValueError, match="num_samples"):
        AUMTracker(num_samples=0)
    with pytest.raises(ValueError, match="index"):
        apm.update(torch.zeros(2, 2), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"expected \(4,\)"):
        APMTracker(num_samples=4).load_state_dict(apm.state_dict())


# --------------------------------------------------------- split and pairing
def test_median_split():
    easy, hard = median_split(torch.tensor([5.0, 1.0, 3.0, 2.0, 4.0]))
    assert hard.tolist() == [1, 3] and easy.tolist() == [2, 4, 0]
    easy, hard = median_split(torch.tensor([0.0, -1.0, 2.0, 1.0]))
    assert sorted(hard.tolist()) == [0, 1] and sorted(easy.tolist()) == [2, 3]
    with pytest.raises(ValueError, match="N >= 2"):
        median_split(torch.tensor([1.0]))


def test_every_partner_is_among_the_k_least_similar_of_the_other_kind():
    g = torch.Generator().manual_seed(0)
    x_lab, x_ulb = (
        torch.rand(12, 1, 6, 6, generator=g),
        torch.rand(40, 1, 6, 6, generator=g),
    )
    lab_easy = torch.arange(12) % 2 == 0
    ulb_easy = torch.rand(40, generator=g) < 0.5
    k = 3
    partner, cand = dissimilar_partners(
        x_lab, x_ulb, lab_easy, ulb_easy, k=k, generator=g
    )
    a, b = x_lab.flatten(1), x_ulb.flatten(1)
    for i in range(12):
        allowed = [j for j in range(40) if bool(ulb_easy[j]) != bool(lab_easy[i])]
        sims = {j: F.cosine_similarity(a[i], b[j], dim=0).item() for j in allowed}
        least = sorted(allowed, key=sims.get)[:k]
        assert sorted(cand[i].tolist()) == sorted(least)
        assert partner[i].item() in least
        assert bool(ulb_easy[partner[i]]) != bool(lab_easy[i])
    # the draw is uniform among the k: over many draws all k candidates appear
    draws = torch.stack(
        [
            dissimilar_partners(x_lab, x_ulb, lab_easy, ulb_easy, k=k, generator=g)[0]
            for _ in range(60)
        ]
    )
    assert all(len(set(draws[:, i].tolist())) == k for i in range(12))
    assert num_candidates(224, 0.05) == 11 and num_candidates(10, 0.05) == 1


def test_mixed_inputs_targets_and_loss():
    g = torch.Generator().manual_seed(1)
    x_lab, x_ulb = (
        torch.rand(6, 1, 4, 4, generator=g),
        torch.rand(20, 1, 4, 4, generator=g),
    )
    aum = torch.tensor([0.5, -1.0, 2.0, 0.0, 3.0, -2.0])  # hard: 5, 1, 3
    apm = torch.linspace(-1, 1, 20)  # hard: 0..9, easy: 10..19
    mixed = make_mixed_batch(
        x_lab, x_ulb, aum, apm, alpha=0.4, k_fraction=0.1, generator=g
    )
    assert mixed.labeled.tolist() == [0, 2, 4, 5, 1, 3]  # easy (ascending), then hard
    assert mixed.group.tolist() == [0, 0, 0, 1, 1, 1]
    assert (mixed.partner[:3] < 10).all() and (mixed.partner[3:] >= 10).all()
    lam = mixed.lam
    assert lam[0] == lam[1] == lam[2] and lam[3] == lam[4] == lam[5]
    lam_b = lam.view(-1, 1, 1, 1)
    expected = lam_b * x_lab[mixed.labeled] + (1 - lam_b) * x_ulb[mixed.partner]
    assert torch.allclose(mixed.x, expected)

    logits = torch.randn(6, 5, generator=g)
    y, yhat = torch.tensor([0, 1, 2, 3, 4, 0]), torch.tensor([4, 4, 2, 0, 1, 1])
    bce = [
        lam[i]
        * F.binary_cross_entropy_with_logits(logits[i], F.one_hot(y[i], 5).float())
        + (1 - lam[i])
        * F.binary_cross_entropy_with_logits(logits[i], F.one_hot(yhat[i], 5).float())
        for i in range(6)
    ]
    expected = sum(bce[:3]) / 3 + sum(bce[3:]) / 3  # L_mix1 + L_mix2
    got = calibratemix_loss(logits, y, yhat, lam, mixed.group)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    ce = [
        lam[i] * F.cross_entropy(logits[i : i + 1], y[i : i + 1])
        + (1 - lam[i]) * F.cross_entropy(logits[i : i + 1], yhat[i : i + 1])
        for i in range(6)
    ]
    got = calibratemix_loss(logits, y, yhat, lam, mixed.group, loss="ce")
    assert got.item() == pytest.approx(
        (sum(ce[:3]) / 3 + sum(ce[3:]) / 3).item(), rel=1e-5
    )
    with pytest.raises(ValueError, match="loss"):
        calibratemix_loss(logits, y, yhat, lam, mixed.group, loss="mse")
    with pytest.raises(ValueError, match="k_fraction"):
        make_mixed_batch(x_lab, x_ulb, aum, apm, k_fraction=0)


# --------------------------------------------------------------- the plugin
@pytest.fixture(scope="module")
def digits():
    x_tr, y_tr, x_te, y_te = load_digits_tensors()
    x_tr, x_te = F.pad(x_tr, (4, 4, 4, 4)), F.pad(x_te, (4, 4, 4, 4))
    lab = torch.cat([torch.nonzero(y_tr == c)[:4, 0] for c in range(10)])
    train = TensorDataset(x_tr[lab], y_tr[lab])
    train.targets = y_tr[lab].tolist()
    test = TensorDataset(x_te[:50], y_te[:50])
    test.targets = y_te[:50].tolist()
    bench = nc_benchmark(train, test, 1, task_labels=False, seed=0)
    return bench, TensorDataset(x_tr)


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


class LossRecorder(SupervisedPlugin):
    """After CalibrateMix in the list: the objective and its parts."""

    def __init__(self, cm):
        super().__init__()
        self.cm = cm
        self.rows = []

    def before_backward(self, strategy, **kwargs):
        self.rows.append(
            {
                "loss": strategy.loss.item(),
                "base": (
                    strategy.sup_loss + strategy.lambda_u * strategy.unsup_loss
                ).item(),
                "mix": None if self.cm.mix_loss is None else self.cm.mix_loss.item(),
                "mixed": self.cm.mixed,
                "y": strategy.mb_y.clone(),
                "pseudo": strategy.mb_pseudo_labels.clone(),
                "x": strategy.mb_x.clone(),
                "weak": strategy.mb_ulb_weak.clone(),
                "ulb_index": strategy.mb_ulb_index.clone(),
                "index": strategy.mb_index.clone(),
            }
        )


def run(digits, algorithm, mode, iterations=3, warmup=1, b=8, mu=2):
    bench, ulb = digits
    torch.manual_seed(0)
    model = small_cnn()
    forwards, backwards = [], []
    model.register_forward_hook(
        lambda m, i, o: forwards.append((i[0].shape[0], torch.is_grad_enabled()))
    )
    model[-1].weight.register_hook(lambda g: backwards.append(1))
    cm = CalibrateMixPlugin(mode=mode, warmup=warmup, k_fraction=0.2, seed=0)
    rec = LossRecorder(cm)
    strategy = SemiSupervisedStrategy(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9),
        unlabeled=ulb,
        algorithm=algorithm,
        train_mb_size=b,
        mu=mu,
        train_iterations=iterations,
        views=SSLViews(flip=False, group_size=8),
        plugins=[cm, rec],
        evaluator=EvaluationPlugin(),
    )
    strategy.train(bench.train_stream[0])
    return cm, rec.rows, forwards, backwards, strategy


@pytest.mark.parametrize("algorithm", ["fixmatch", "softmatch", "flexmatch"])
@pytest.mark.parametrize("mode", ["fast", "faithful"])
def test_each_algorithm_trains_with_calibratemix(digits, algorithm, mode):
    b, u = 8, 16
    cm, rows, forwards, backwards, _ = run(digits, algorithm, mode)
    assert len(rows) == 3 and all(math.isfinite(r["loss"]) for r in rows)
    assert rows[0]["mix"] is None  # warm-up iteration: base loss only
    assert rows[0]["loss"] == pytest.approx(rows[0]["base"], rel=1e-6)
    assert all(r["mix"] is not None and math.isfinite(r["mix"]) for r in rows[1:])
    assert len(backwards) == 3  # one backward per iteration in both modes
    if mode == "fast":
        # one forward per iteration; the mixed batch joins it after warm-up
        assert forwards == [
            (b + 2 * u, True),
            (2 * b + 2 * u, True),
            (2 * b + 2 * u, True),
        ]
        for r in rows[1:]:  # objective = 2 x base + L_mix
            assert r["loss"] == pytest.approx(2 * r["base"] + r["mix"], rel=1e-5)
    else:
        # two forwards with gradients per mixing iteration
        assert (
            forwards
            == [(b + 2 * u, True)] + [(b + 2 * u, True), (2 * b + 2 * u, True)] * 2
        )
    for r in rows[1:]:
        m = r["mixed"]
        lam = m.lam.view(-1, 1, 1, 1)
        expected = lam * r["x"][m.labeled] + (1 - lam) * r["weak"][m.partner]
        assert torch.allclose(m.x, expected, atol=1e-6)
        assert sorted(m.labeled.tolist()) == list(range(b))
    # AUM every step, APM after the one warm-up step, only at the batch indices
    assert int(cm.aum.count.sum()) == 3 * b
    seen = torch.cat([r["ulb_index"] for r in rows[1:]]).unique()
    assert torch.equal(torch.nonzero(cm.apm.count)[:, 0], seen.sort().values)


def test_no_apm_update_during_warmup_and_state_round_trip(digits):
    cm, rows, forwards, _, strategy = run(digits, "softmatch", "fast", warmup=0.9)
    assert cm.warmup_iterations == 3 == cm.iteration  # round(0.9 * 3): all warm-up
    assert int(cm.apm.count.sum()) == 0 and cm.apm.table is None
    assert all(r["mix"] is None for r in rows) and len(forwards) == 3
    seen = torch.cat([r["index"] for r in rows]).unique()
    assert torch.equal(torch.nonzero(cm.aum.count)[:, 0], seen.sort().values)

    cm2, *_ = run(digits, "fixmatch", "faithful", warmup=0)
    state = cm2.state_dict()
    restored = CalibrateMixPlugin(mode="faithful", seed=1)
    restored.load_state_dict(state)
    assert torch.equal(restored.apm.table, cm2.apm.table)
    assert torch.equal(restored.aum.margin_sum, cm2.aum.margin_sum)
    assert restored.iteration == 3 and restored.generator.get_state().equal(
        cm2.generator.get_state()
    )


def test_plugin_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        CalibrateMixPlugin(mode="slow")
    with pytest.raises(ValueError, match="warmup"):
        CalibrateMixPlugin(warmup=1.5)
    with pytest.raises(ValueError, match="warmup"):
        CalibrateMixPlugin(warmup=-1)
    with pytest.raises(ValueError, match="loss"):
        CalibrateMixPlugin(loss="mse")
    with pytest.raises(ValueError, match="k_fraction"):
        CalibrateMixPlugin(k_fraction=2)
