"""The CalibrateMix plugin inside SemiSupervisedStrategy on digits: losses,
forwards, the split against a brute-force recomputation, diagnostics, NaN."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin

from ssl_ext.calibratemix_plugin import CalibrateMixPlugin
from ssl_ext.dynamics import APMTracker, AUMTracker
from tests.support.nets import two_conv_cnn
from tests.support.semi_supervised import ssl_digits, ssl_strategy


@pytest.fixture(scope="module")
def few_labels():
    """Four labeled digits per class (one experience), every train image unlabeled."""
    return ssl_digits(per_class=4, n_test=50)


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
                "logits": strategy.mb_output.detach().clone(),
                "weak_logits": strategy.mb_ulb_weak_output.detach().clone(),
                "ulb_index": strategy.mb_ulb_index.clone(),
                "index": strategy.mb_index.clone(),
            }
        )


def run(few_labels, algorithm, mode, iterations=3, warmup=1, b=8, mu=2, **kwargs):
    bench, ulb = few_labels
    torch.manual_seed(0)
    model = two_conv_cnn()
    forwards, backwards = [], []
    model.register_forward_hook(
        lambda m, i, o: forwards.append((i[0].shape[0], torch.is_grad_enabled()))
    )
    model[-1].weight.register_hook(lambda g: backwards.append(1))
    kwargs.setdefault("k_fraction", 0.2)
    cm = CalibrateMixPlugin(mode=mode, warmup=warmup, seed=0, **kwargs)
    rec = LossRecorder(cm)
    strategy = ssl_strategy(
        model,
        ulb,
        [cm, rec],
        momentum=0.9,
        algorithm=algorithm,
        train_mb_size=b,
        mu=mu,
        train_iterations=iterations,
    )
    strategy.train(bench.train_stream[0])
    return cm, rec.rows, forwards, backwards, strategy


@pytest.mark.parametrize("algorithm", ["fixmatch", "softmatch", "flexmatch"])
@pytest.mark.parametrize("mode", ["fast", "faithful"])
def test_each_algorithm_trains_with_calibratemix(few_labels, algorithm, mode):
    b, u = 8, 16
    cm, rows, forwards, backwards, _ = run(few_labels, algorithm, mode)
    assert len(rows) == 3 and all(math.isfinite(r["loss"]) for r in rows)
    assert rows[0]["mix"] is None  # warm-up iteration: base loss only
    assert rows[0]["loss"] == pytest.approx(rows[0]["base"], rel=1e-6)
    assert all(r["mix"] is not None and math.isfinite(r["mix"]) for r in rows[1:])
    assert len(backwards) == 3  # one backward per iteration in both modes
    if mode == "fast":
        # the main forward, then (after warm-up) a forward of the B mixed only
        assert forwards == [(b + 2 * u, True)] + [(b + 2 * u, True), (b, True)] * 2
        # objective = base + w L_mix (no doubling by default; w: the validated
        # default weight of the algorithm, docs/calibratemix.md)
        w = {"fixmatch": 1.0, "softmatch": 0.5, "flexmatch": 0.5}[algorithm]
        for r in rows[1:]:
            assert r["loss"] == pytest.approx(r["base"] + w * r["mix"], rel=1e-5)
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


def _brute_force_dynamics(rows, warmup, delta=0.997):
    """AUM and APM recomputed from the recorded logits with plain Python loops:
    for each iteration, the values *after* that iteration's update."""
    margins_seen, apm, n_upd, out = {}, {}, {}, []
    for t, r in enumerate(rows):
        for z, y, i in zip(r["logits"].tolist(), r["y"].tolist(), r["index"].tolist()):
            margin = z[y] - max(v for c, v in enumerate(z) if c != y)
            margins_seen.setdefault(i, []).append(margin)
        if t >= warmup:
            for z, i in zip(r["weak_logits"].tolist(), r["ulb_index"].tolist()):
                pm = []
                for c in range(len(z)):
                    pm.append(z[c] - max(v for j, v in enumerate(z) if j != c))
                old = apm.get(i, [0.0] * len(z))
                a = delta / (1 + n_upd.get(i, 0))
                apm[i] = [a * p + (1 - a) * o for p, o in zip(pm, old)]
                n_upd[i] = n_upd.get(i, 0) + 1
        aum = {i: sum(m) / len(m) for i, m in margins_seen.items()}
        out.append(({**aum}, {i: list(v) for i, v in apm.items()}, dict(n_upd)))
    return out


@pytest.mark.parametrize("mode", ["fast", "faithful"])
def test_split_and_pairs_follow_this_steps_dynamics(few_labels, mode):
    """Every mixing iteration, against an independent recomputation: the split
    reads AUM/APM *including this step's update*, easy = upper half of the
    scores (labeled and unlabeled), and each partner is among the k least
    cosine-similar unlabeled samples of the other kind."""
    b, u, warmup = 8, 16, 2
    cm, rows, *_ = run(
        few_labels, "fixmatch", mode, iterations=6, warmup=warmup, k_fraction=0.15
    )
    k = 2  # round(0.15 * 16)
    truth = _brute_force_dynamics(rows, warmup)
    for t, r in enumerate(rows):
        m = r["mixed"]
        if t < warmup:
            assert m is None
            continue
        aum, apm, n_upd = truth[t]
        sp = m.split
        lab_scores = [aum[i] for i in r["index"].tolist()]
        pseudo = r["weak_logits"].argmax(1).tolist()
        ulb_scores = [apm[i][c] for i, c in zip(r["ulb_index"].tolist(), pseudo)]
        assert sp.labeled_scores.tolist() == pytest.approx(lab_scores, abs=1e-4)
        assert sp.unlabeled_scores.tolist() == pytest.approx(ulb_scores, abs=1e-4)
        assert all(n_upd[i] >= 1 for i in r["ulb_index"].tolist())
        # upper half easy, lower half hard (scores ranked by hand)
        lab_rank = sorted(range(b), key=lambda i: lab_scores[i])
        ulb_rank = sorted(range(u), key=lambda i: ulb_scores[i])
        assert set(torch.nonzero(sp.labeled_easy)[:, 0].tolist()) == set(
            lab_rank[b // 2 :]
        )
        assert set(torch.nonzero(sp.unlabeled_easy)[:, 0].tolist()) == set(
            ulb_rank[u // 2 :]
        )
        assert set(torch.nonzero(sp.unlabeled_hard)[:, 0].tolist()) == set(
            ulb_rank[: u // 2]
        )
        x = r["x"].flatten(1)
        w = r["weak"].flatten(1)
        for i, j, grp in zip(m.labeled.tolist(), m.partner.tolist(), m.group.tolist()):
            lab_is_easy = i in lab_rank[b // 2 :]
            assert grp == (0 if lab_is_easy else 1)
            kind = ulb_rank[: u // 2] if lab_is_easy else ulb_rank[u // 2 :]
            sims = {c: F.cosine_similarity(x[i], w[c], dim=0).item() for c in kind}
            least = sorted(kind, key=sims.get)[:k]
            assert j in least, (t, i, j, least)


def test_no_apm_update_during_warmup_and_state_round_trip(few_labels):
    cm, rows, forwards, _, strategy = run(few_labels, "softmatch", "fast", warmup=0.9)
    assert cm.warmup_iterations == 3 == cm.iteration  # round(0.9 * 3): all warm-up
    assert int(cm.apm.count.sum()) == 0 and cm.apm.table is None
    assert all(r["mix"] is None for r in rows) and len(forwards) == 3
    seen = torch.cat([r["index"] for r in rows]).unique()
    assert torch.equal(torch.nonzero(cm.aum.count)[:, 0], seen.sort().values)

    cm2, *_ = run(few_labels, "fixmatch", "faithful", warmup=0)
    state = cm2.state_dict()
    restored = CalibrateMixPlugin(mode="faithful", seed=1)
    restored.load_state_dict(state)
    assert torch.equal(restored.apm.table, cm2.apm.table)
    assert torch.equal(restored.aum.margin_sum, cm2.aum.margin_sum)
    assert restored.iteration == 3 and restored.generator.get_state().equal(
        cm2.generator.get_state()
    )


def test_apm_is_read_at_this_steps_pseudo_label_and_history_decides():
    """Sample 0 was confidently class 0 twice (APM row 0.9985 x (3, -3, -3):
    a = 0.997, then 0.997 / 2), but this step's weak logits say class 1: the
    split reads APM[0, 1] = -2.9955, not the row's largest value. Sample 2
    was never updated: undecided."""
    from types import SimpleNamespace

    cm = CalibrateMixPlugin(min_apm_updates=1)
    cm.aum = AUMTracker(num_samples=2)
    cm.apm = APMTracker(num_samples=3)
    for _ in range(2):
        cm.apm.update(torch.tensor([[3.0, 0.0, 0.0]]), torch.tensor([0]))
    cm.apm.update(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([1]))
    strategy = SimpleNamespace(
        mb_index=torch.tensor([0, 1]),
        mb_ulb_index=torch.tensor([0, 1, 2]),
        mb_ulb_weak_output=torch.tensor(
            [[0.0, 1.0, 0.0], [0.0, 0.0, 2.0], [1.0, 0.0, 0.0]]
        ),
    )
    _, apm, decided = cm.split_scores(strategy)
    assert apm[0].item() == pytest.approx(-3 * 0.9985, abs=1e-4)
    assert apm[1].item() == pytest.approx(0.997, abs=1e-4)  # top1 - top2 = 1
    assert decided.tolist() == [True, True, False]
    cm.min_apm_updates = 2
    assert cm.split_scores(strategy)[2].tolist() == [True, False, False]


class MetricSink:
    """A logger keeping every metric value the evaluator hands it."""

    def __init__(self):
        self.values = {}

    def log_metrics(self, values):
        for v in values:
            self.values.setdefault(v.name, []).append(v.value)


def test_diagnostics_are_the_split_values_and_reach_the_loggers(few_labels):
    """Per experience: fractions and group means recomputed by hand from the
    splits the plugin used, published through Avalanche's evaluator."""
    bench, ulb = few_labels
    torch.manual_seed(0)
    model = two_conv_cnn()
    cm = CalibrateMixPlugin(mode="fast", warmup=2, k_fraction=0.2, seed=0)
    rec = LossRecorder(cm)
    sink = MetricSink()
    strategy = ssl_strategy(
        model,
        ulb,
        [cm, rec],
        train_iterations=5,
        evaluator=EvaluationPlugin(loggers=[sink]),
    )
    strategy.train(bench.train_stream[0])
    splits = [r["mixed"].split for r in rec.rows if r["mixed"] is not None]
    assert len(splits) == 3
    easy = [
        a
        for sp in splits
        for a, e in zip(sp.unlabeled_scores.tolist(), sp.unlabeled_easy.tolist())
        if e
    ]
    hard = [
        a
        for sp in splits
        for a, h in zip(sp.unlabeled_scores.tolist(), sp.unlabeled_hard.tolist())
        if h
    ]
    sims = [
        v
        for r in rec.rows
        if r["mixed"] is not None
        for v in r["mixed"].similarity.tolist()
    ]
    diag = cm.history[-1]
    assert diag["mixing_iterations"] == 3
    assert diag["unlabeled_easy_fraction"] == pytest.approx(len(easy) / (3 * 16))
    assert diag["unlabeled_undecided_fraction"] == pytest.approx(0.0, abs=1e-6)
    assert diag["unlabeled_easy_apm"] == pytest.approx(sum(easy) / len(easy), rel=1e-5)
    assert diag["unlabeled_hard_apm"] == pytest.approx(sum(hard) / len(hard), rel=1e-5)
    assert diag["unlabeled_easy_apm"] > diag["unlabeled_hard_apm"]
    assert diag["labeled_easy_aum"] >= diag["labeled_hard_aum"]
    assert diag["pair_similarity"] == pytest.approx(sum(sims) / len(sims), rel=1e-5)
    name = "CalibrateMix_UnlabeledEasyApm/train_phase/train_stream"
    assert sink.values[name] == [pytest.approx(diag["unlabeled_easy_apm"])]
    assert "CalibrateMix_PairSimilarity/train_phase/train_stream" in sink.values


@pytest.mark.parametrize(
    "mode, double, factor",
    [("fast", True, 2.0), ("faithful", False, 1.0), ("faithful", True, None)],
)
def test_base_loss_doubling_is_its_own_flag(few_labels, mode, double, factor):
    cm, rows, forwards, _, _ = run(
        few_labels, "fixmatch", mode, double_base_loss=double, mix_weight=2.0
    )
    assert cm.double_base_loss is double
    if mode == "faithful":  # still the release's two passes with gradients
        assert len(forwards) == 5 and forwards[-1] == (8 + 2 * 16 + 8, True)
    for r in rows[1:]:
        if factor is None:  # L1 + base(second pass) + L_mix: more than L1 + L_mix
            assert r["loss"] > r["base"] + 2.0 * r["mix"]
        else:
            expected = factor * r["base"] + 2.0 * r["mix"]
            assert r["loss"] == pytest.approx(expected, rel=1e-5)
    assert CalibrateMixPlugin(mode="faithful").double_base_loss is True
    assert CalibrateMixPlugin(mode="fast").double_base_loss is False


class Poison(SupervisedPlugin):
    """NaN into one labeled input (id recorded) or one unlabeled weak view, on
    iteration 2 (before the forward)."""

    def __init__(self, where):
        super().__init__()
        self.where, self.n, self.poisoned = where, 0, None

    def before_forward(self, strategy, **kwargs):
        self.n += 1
        if self.n != 2:
            return
        if self.where == "labeled":
            x = strategy.mbatch[0].clone()
            x[0] = float("nan")
            strategy.mbatch[0] = x
            self.poisoned = int(strategy.mb_index[0])
        else:
            weak = strategy.mb_ulb_weak.clone()
            weak[0] = float("nan")
            strategy.mb_ulb_weak = weak
            self.poisoned = int(strategy.mb_ulb_index[0])


@pytest.mark.parametrize("where", ["labeled", "unlabeled"])
def test_nan_inputs_never_enter_aum_or_apm(few_labels, where):
    """A NaN input makes its logits row NaN (no BatchNorm to spread it): that
    row is not counted in its table, every value stays finite, and the step
    whose gradients are NaN is skipped with a warning."""
    bench, ulb = few_labels
    torch.manual_seed(0)
    model = two_conv_cnn(batch_norm=False)
    poison = Poison(where)
    cm = CalibrateMixPlugin(mode="fast", warmup=0, k_fraction=0.2, seed=0)
    strategy = ssl_strategy(model, ulb, [poison, cm], train_iterations=3)
    with pytest.warns(RuntimeWarning, match="NaN or inf"):
        strategy.train(bench.train_stream[0])
    assert strategy.skipped_steps >= 1
    if where == "labeled":
        table = cm.aum
        assert torch.isfinite(table.margin_sum).all()
        # 3 iterations of 8 labeled samples, one row left out
        assert int(table.count.sum()) == 3 * 8 - 1
    else:
        table = cm.apm
        assert torch.isfinite(table.table).all()
        assert int(table.count.sum()) == 3 * 16 - 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "slow"}, "mode"),
        ({"warmup": 1.5}, "warmup"),
        ({"warmup": -1}, "warmup"),
        ({"loss": "mse"}, "loss"),
        ({"k_fraction": 2}, "k_fraction"),
        ({"mix_weight": -1}, "mix_weight"),
        ({"double_base_loss": "yes"}, "double_base_loss"),
        ({"min_apm_updates": 0}, "min_apm_updates"),
        ({"split_rule": "median"}, "split_rule"),
    ],
)
def test_plugin_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CalibrateMixPlugin(**kwargs)
