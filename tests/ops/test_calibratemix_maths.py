"""CalibrateMix maths, no Avalanche: AUM/APM trackers, the easy/hard split,
dissimilar pairing and the mixed loss, against hand-worked cases."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssl_ext.calibratemix import (
    calibratemix_loss,
    dissimilar_partners,
    make_mixed_batch,
    median_split,
    median_split_masks,
    num_candidates,
)
from ssl_ext.dynamics import APMTracker, AUMTracker, margins, pseudo_margins


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


def test_mixed_batch_is_a_deprecated_name():
    import ssl_ext.calibratemix as cm

    with pytest.warns(DeprecationWarning, match="CalibrateMixBatch"):
        assert cm.MixedBatch is cm.CalibrateMixBatch
