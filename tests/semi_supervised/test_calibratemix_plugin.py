"""CalibrateMix: AUM/APM trackers, split, pairing, mixed loss and the plugin on digits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin
from ssl_helpers import small_cnn, ssl_digits, ssl_strategy

from ssl_ext.calibratemix import (
    calibratemix_loss,
    dissimilar_partners,
    make_mixed_batch,
    median_split,
    median_split_masks,
    num_candidates,
)
from ssl_ext.calibratemix_plugin import CalibrateMixPlugin
from ssl_ext.dynamics import APMTracker, AUMTracker, margins, pseudo_margins

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


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
    partner, cand, valid, sim = dissimilar_partners(
        x_lab, x_ulb, lab_easy, ulb_easy, k=k, generator=g
    )
    assert valid.all()
    a, b = x_lab.flatten(1), x_ulb.flatten(1)
    for i in range(12):
        allowed = [j for j in range(40) if bool(ulb_easy[j]) != bool(lab_easy[i])]
        sims = {j: F.cosine_similarity(a[i], b[j], dim=0).item() for j in allowed}
        least = sorted(allowed, key=sims.get)[:k]
        assert sorted(cand[i].tolist()) == sorted(least)
        assert partner[i].item() in least
        assert bool(ulb_easy[partner[i]]) != bool(lab_easy[i])
        assert sim[i].item() == pytest.approx(sims[partner[i].item()], abs=1e-6)
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


def _basis_batch():
    """Hand-built inputs: 4-dim vectors (shape (1, 1, 4)) made of basis vectors,
    so every cosine similarity is known: e_i . e_j = 0, (e1 + e2) . e1 / |.| =
    0.707, (e1 + e2 + e3) . e1 / |.| = 0.577."""
    e = torch.eye(4)

    def v(*ids):
        return sum(e[i] for i in ids).view(1, 1, 4)

    x_lab = torch.stack([v(0), v(2), v(1), v(3)])  # e1, e3, e2, e4
    # unlabeled 0..7
    x_ulb = torch.stack(
        [v(0, 1, 2), v(2, 3), v(0, 1), v(3), v(2), v(0), v(1), v(0, 2, 3)]
    )
    aum = torch.tensor([2.0, -1.0, 0.5, -3.0])
    apm = torch.tensor([0.1, 3.0, -0.5, 2.0, 1.0, -2.0, 0.0, 4.0])
    return x_lab, x_ulb, aum, apm


def test_hand_worked_batch_gives_exactly_the_expected_groups_and_pairs():
    """AUM ranks the labeled samples 3 < 1 < 2 < 0: easy {0, 2}, hard {1, 3};
    APM ranks the unlabeled 5 < 2 < 6 < 0 < 4 < 3 < 1 < 7: hard {0, 2, 5, 6},
    easy {1, 3, 4, 7}. With k = 1 each partner is the least similar one of the
    other kind (cosines by hand, see _basis_batch):

    * labeled 0 (e1, easy) vs hard 5 (e1) 1, 2 (e1+e2) .71, 6 (e2) 0,
      0 (e1+e2+e3) .58 -> 6
    * labeled 2 (e2, easy) vs 5: 0, 2: .71, 6: 1, 0: .58 -> 5
    * labeled 1 (e3, hard) vs easy 4 (e3) 1, 3 (e4) 0, 1 (e3+e4) .71,
      7 (e1+e3+e4) .58 -> 3
    * labeled 3 (e4, hard) vs 4: 0, 3: 1, 1: .71, 7: .58 -> 4
    """
    x_lab, x_ulb, aum, apm = _basis_batch()
    g = torch.Generator().manual_seed(0)
    m = make_mixed_batch(x_lab, x_ulb, aum, apm, k_fraction=0.01, generator=g)
    assert m.split.labeled_easy.tolist() == [True, False, True, False]
    assert torch.nonzero(m.split.unlabeled_easy)[:, 0].tolist() == [1, 3, 4, 7]
    assert torch.nonzero(m.split.unlabeled_hard)[:, 0].tolist() == [0, 2, 5, 6]
    pairs = dict(zip(m.labeled.tolist(), m.partner.tolist()))
    assert pairs == {0: 6, 2: 5, 1: 3, 3: 4}
    groups = dict(zip(m.labeled.tolist(), m.group.tolist()))
    assert groups == {0: 0, 2: 0, 1: 1, 3: 1}  # mix 1: labeled-easy
    assert m.valid.all()
    assert m.similarity.tolist() == pytest.approx([0.0] * 4, abs=1e-6)


def test_undecided_samples_are_never_split_or_paired():
    """Unlabeled 5 and 6 have no APM history: the median split is taken over
    the six others (2 < 0 < 4 | 3 < 1 < 7) and the least similar partners
    become: labeled 0 (e1) -> 4 (e3), labeled 2 (e2) -> 4, labeled 1 (e3)
    -> 3 (e4), labeled 3 (e4) -> 7 (e1+e3+e4, .58; 1 is .71, 3 is 1)."""
    x_lab, x_ulb, aum, apm = _basis_batch()
    decided = torch.ones(8, dtype=torch.bool)
    decided[[5, 6]] = False
    m = make_mixed_batch(
        x_lab, x_ulb, aum, apm, unlabeled_decided=decided, k_fraction=0.01
    )
    assert torch.nonzero(m.split.unlabeled_hard)[:, 0].tolist() == [0, 2, 4]
    assert torch.nonzero(m.split.unlabeled_easy)[:, 0].tolist() == [1, 3, 7]
    assert dict(zip(m.labeled.tolist(), m.partner.tolist())) == {
        0: 4,
        2: 4,
        1: 3,
        3: 7,
    }
    # nothing decided: no valid pair, and the loss ignores them
    none = torch.zeros(8, dtype=torch.bool)
    m = make_mixed_batch(x_lab, x_ulb, aum, apm, unlabeled_decided=none)
    assert not m.split.unlabeled_easy.any() and not m.split.unlabeled_hard.any()
    assert not m.valid.any()
    logits = torch.randn(4, 3, requires_grad=True)
    loss = calibratemix_loss(
        logits,
        torch.zeros(4, dtype=torch.long),
        torch.ones(4, dtype=torch.long),
        m.lam,
        m.group,
        valid=m.valid,
    )
    assert loss.item() == 0.0


def test_median_split_masks_against_sorting_by_hand():
    g = torch.Generator().manual_seed(3)
    for n in (2, 5, 8, 13):
        scores = torch.randn(n, generator=g)
        decided = torch.rand(n, generator=g) < 0.7
        easy, hard = median_split_masks(scores, decided)
        ids = [i for i in range(n) if decided[i]]
        ranked = sorted(ids, key=lambda i: float(scores[i]))
        n_hard = len(ids) // 2
        assert sorted(torch.nonzero(hard)[:, 0].tolist()) == sorted(ranked[:n_hard])
        assert sorted(torch.nonzero(easy)[:, 0].tolist()) == sorted(ranked[n_hard:])


# --------------------------------------------------------------- the plugin
@pytest.fixture(scope="module")
def digits():
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


def run(digits, algorithm, mode, iterations=3, warmup=1, b=8, mu=2, **kwargs):
    bench, ulb = digits
    torch.manual_seed(0)
    model = small_cnn()
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
def test_each_algorithm_trains_with_calibratemix(digits, algorithm, mode):
    b, u = 8, 16
    cm, rows, forwards, backwards, _ = run(digits, algorithm, mode)
    assert len(rows) == 3 and all(math.isfinite(r["loss"]) for r in rows)
    assert rows[0]["mix"] is None  # warm-up iteration: base loss only
    assert rows[0]["loss"] == pytest.approx(rows[0]["base"], rel=1e-6)
    assert all(r["mix"] is not None and math.isfinite(r["mix"]) for r in rows[1:])
    assert len(backwards) == 3  # one backward per iteration in both modes
    if mode == "fast":
        # the main forward, then (after warm-up) a forward of the B mixed only
        assert forwards == [(b + 2 * u, True)] + [(b + 2 * u, True), (b, True)] * 2
        for r in rows[1:]:  # objective = base + L_mix (no doubling by default)
            assert r["loss"] == pytest.approx(r["base"] + r["mix"], rel=1e-5)
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
def test_split_and_pairs_follow_this_steps_dynamics(digits, mode):
    """Every mixing iteration, against an independent recomputation: the split
    reads AUM/APM *including this step's update*, easy = upper half of the
    scores (labeled and unlabeled), and each partner is among the k least
    cosine-similar unlabeled samples of the other kind."""
    b, u, warmup = 8, 16, 2
    cm, rows, *_ = run(
        digits, "fixmatch", mode, iterations=6, warmup=warmup, k_fraction=0.15
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


def test_diagnostics_are_the_split_values_and_reach_the_loggers(digits):
    """Per experience: fractions and group means recomputed by hand from the
    splits the plugin used, published through Avalanche's evaluator."""
    bench, ulb = digits
    torch.manual_seed(0)
    model = small_cnn()
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
def test_base_loss_doubling_is_its_own_flag(digits, mode, double, factor):
    cm, rows, forwards, _, _ = run(
        digits, "fixmatch", mode, double_base_loss=double, mix_weight=2.0
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
def test_nan_inputs_never_enter_aum_or_apm(digits, where):
    """A NaN input makes its logits row NaN (no BatchNorm to spread it): that
    row is not counted in its table, every value stays finite, and the step
    whose gradients are NaN is skipped with a warning."""
    bench, ulb = digits
    torch.manual_seed(0)
    model = small_cnn(batch_norm=False)
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


def test_mixed_batch_is_a_deprecated_name():
    import ssl_ext.calibratemix as cm

    with pytest.warns(DeprecationWarning, match="CalibrateMixBatch"):
        assert cm.MixedBatch is cm.CalibrateMixBatch
