"""Pseudo-labelling rules of ssl_ext.algorithms against hand-computed values."""

import math

import pytest
import torch
import torch.nn.functional as F

from ssl_ext.algorithms import (
    DistributionAlignment,
    FixMatch,
    FlexMatch,
    SoftMatch,
    consistency_loss,
    make_pseudo_labeler,
)


def logits_of(probs):
    """Logits whose softmax is ``probs`` (rows sum to 1)."""
    return torch.tensor(probs, dtype=torch.float64).log().float()


def test_fixmatch_mask_and_targets():
    probs = [
        [0.96, 0.02, 0.02],
        [0.5, 0.3, 0.2],
        [0.03, 0.02, 0.95],
        [0.01, 0.97, 0.02],
    ]
    out = FixMatch(threshold=0.955)(logits_of(probs))
    assert out.targets.tolist() == [0, 0, 2, 1]
    # 0.95 < 0.955: third sample masked out
    assert out.weights.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert out.weights.dtype == torch.float32
    out = FixMatch(threshold=0.5)(logits_of(probs))
    assert out.weights.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_consistency_loss_hand_computed():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], requires_grad=True)
    targets = torch.tensor([0, 0, 1])
    weights = torch.tensor([1.0, 0.0, 0.5])
    ce0 = -math.log(math.exp(2) / (math.exp(2) + 1))
    ce2 = math.log(2)
    expected = (ce0 * 1.0 + ce2 * 0.5) / 3  # masked samples stay in the denominator
    loss = consistency_loss(logits, targets, weights)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert logits.grad[1].abs().sum() == 0  # a zero weight gives no gradient
    # soft targets: one-hot soft targets give the same value
    soft = F.one_hot(targets, 2).float()
    assert consistency_loss(logits, soft, weights).item() == pytest.approx(
        expected, rel=1e-6
    )


def test_distribution_alignment_hand_computed():
    da = DistributionAlignment(momentum=0.5)
    p1 = torch.tensor([[0.8, 0.2], [0.4, 0.6]])
    out1 = da(p1)
    # first batch initialises p_model with its mean (0.6, 0.4)
    assert da.p_model.tolist() == pytest.approx([0.6, 0.4])
    raw = torch.tensor(
        [[0.8 * 0.5 / 0.6, 0.2 * 0.5 / 0.4], [0.4 * 0.5 / 0.6, 0.6 * 0.5 / 0.4]]
    )
    assert torch.allclose(out1, raw / raw.sum(1, keepdim=True))
    p2 = torch.tensor([[0.2, 0.8], [0.2, 0.8]])
    out2 = da(p2)
    # EMA update before aligning: 0.5 * (0.6, 0.4) + 0.5 * (0.2, 0.8)
    assert da.p_model.tolist() == pytest.approx([0.4, 0.6])
    raw = torch.tensor([0.2 / 0.4, 0.8 / 0.6])
    assert torch.allclose(out2[0], raw / raw.sum())
    # update=False leaves the statistics alone
    da(p1, update=False)
    assert da.p_model.tolist() == pytest.approx([0.4, 0.6])


def test_softmatch_weights_hand_computed():
    sm = SoftMatch(n_sigma=2.0, momentum=0.5, dist_align=False)
    probs = [[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]]
    out = sm(logits_of(probs))
    m = torch.tensor([0.9, 0.6, 0.7])
    mu = 0.5 * 0.5 + 0.5 * m.mean().item()  # mu_0 = 1 / C
    var = 0.5 * 1.0 + 0.5 * m.var(unbiased=True).item()  # var_0 = 1
    expected = [
        math.exp(-(min(v - mu, 0.0) ** 2) / (2 * var / 4.0)) for v in (0.9, 0.6, 0.7)
    ]
    assert out.targets.tolist() == [0, 0, 1]
    assert out.weights.tolist() == pytest.approx(expected, rel=1e-5)
    assert sm.prob_max_mu.item() == pytest.approx(mu)
    assert sm.prob_max_var.item() == pytest.approx(var)
    # samples above the mean get weight exactly 1
    assert out.weights[0].item() == 1.0 and out.weights[1].item() < 1.0


def test_softmatch_pseudo_labels_are_the_raw_arg_max_not_the_aligned_one():
    """Alignment only shapes the weights (USB, the CalibrateMix release)."""
    sm = SoftMatch(momentum=0.999)
    # batch mean (0.5875, 0.4125) becomes p_model: aligning the last row gives
    # (0.55 / 0.5875, 0.45 / 0.4125) = (0.936, 1.091): class 1, raw arg-max 0
    logits = logits_of([[0.6, 0.4], [0.6, 0.4], [0.6, 0.4], [0.55, 0.45]])
    out = sm(logits)
    p = logits.softmax(-1)
    aligned = p * 0.5 / p.mean(0)
    aligned = aligned / aligned.sum(1, keepdim=True)
    assert aligned.argmax(1).tolist() == [0, 0, 0, 1]  # the case is meaningful
    assert out.targets.tolist() == [0, 0, 0, 0]  # raw arg-max
    # the weights come from the aligned confidence
    assert torch.allclose(out.probs, aligned, atol=1e-6)
    m = aligned.max(1).values
    mu = 0.999 * 0.5 + 0.001 * m.mean().item()
    var = 0.999 * 1.0 + 0.001 * m.var(unbiased=True).item()
    expected = [
        math.exp(-(min(v - mu, 0.0) ** 2) / (2 * var / 4.0)) for v in m.tolist()
    ]
    assert out.weights.tolist() == pytest.approx(expected, rel=1e-5)
    assert "p_model" in sm.state_dict()


def test_flexmatch_thresholds_hand_computed():
    fm = FlexMatch(num_unlabeled=6, threshold=0.9, warmup=True)
    probs = [
        [0.95, 0.03, 0.02],
        [0.92, 0.04, 0.04],
        [0.25, 0.5, 0.25],
        [0.01, 0.02, 0.97],
    ]
    out = fm(logits_of(probs), index=torch.tensor([0, 1, 2, 3]))
    # before any selection every threshold is 0.9 * M(0) = 0: all kept
    assert out.weights.tolist() == [1.0, 1.0, 1.0, 1.0]
    assert fm.selected_label.tolist() == [0, 0, -1, 2, -1, -1]
    # counts: unused 3, class0 2, class1 0, class2 1; warm-up normaliser = 3
    acc = [2 / 3, 0.0, 1 / 3]
    assert fm.classwise_acc.tolist() == pytest.approx(acc)
    expected_thr = [0.9 * a / (2 - a) for a in acc]  # [0.45, 0, 0.18]
    assert fm.class_thresholds().tolist() == pytest.approx(expected_thr)
    # the next batch is masked with these class-wise thresholds
    probs2 = [
        [0.44, 0.28, 0.28],
        [0.46, 0.27, 0.27],
        [0.2, 0.2, 0.6],
        [0.4, 0.41, 0.19],
    ]
    out2 = fm(logits_of(probs2), index=torch.tensor([4, 5, 2, 3]), update=False)
    assert out2.weights.tolist() == [0.0, 1.0, 1.0, 1.0]
    assert fm.selected_label.tolist() == [0, 0, -1, 2, -1, -1]  # update=False

    nowarm = FlexMatch(num_unlabeled=6, threshold=0.9, warmup=False)
    nowarm(logits_of(probs), index=torch.tensor([0, 1, 2, 3]))
    # normaliser = largest class count (2)
    assert nowarm.classwise_acc.tolist() == pytest.approx([1.0, 0.0, 0.5])
    assert nowarm.class_thresholds().tolist() == pytest.approx([0.9, 0.0, 0.3])


def test_flexmatch_masks_a_batch_with_the_thresholds_before_its_own_update():
    """Sample 2 (0.4 for class 0) passes the thresholds before this batch
    (all 0) but not those after it (class 0: 0.9 M(2/3) = 0.45)."""
    fm = FlexMatch(num_unlabeled=6, threshold=0.9, warmup=True)
    probs = [
        [0.95, 0.03, 0.02],
        [0.92, 0.04, 0.04],
        [0.4, 0.3, 0.3],
        [0.01, 0.02, 0.97],
    ]
    out = fm(logits_of(probs), index=torch.tensor([0, 1, 2, 3]))
    assert fm.class_thresholds()[0].item() == pytest.approx(0.45)  # after update
    assert out.weights.tolist() == [1.0, 1.0, 1.0, 1.0]  # masked before it


def test_flexmatch_stops_refreshing_when_every_sample_is_used():
    fm = FlexMatch(num_unlabeled=2, threshold=0.9)
    fm(logits_of([[0.95, 0.05]]), index=torch.tensor([0]))
    assert fm.classwise_acc.tolist() == pytest.approx(
        [1.0, 0.0]
    )  # unused: 1, class0: 1
    fm(logits_of([[0.95, 0.05]]), index=torch.tensor([1]))
    # class 0 now holds both samples: max count == N, the estimate is frozen
    assert fm.selected_label.tolist() == [0, 0]
    assert fm.classwise_acc.tolist() == pytest.approx([1.0, 0.0])


def test_flexmatch_needs_indices_and_grows_with_classes():
    fm = FlexMatch(num_unlabeled=4)
    with pytest.raises(ValueError, match="indices"):
        fm(torch.randn(2, 3))
    with pytest.raises(ValueError, match="index"):
        fm(torch.randn(2, 3), index=torch.tensor([0]))
    fm(torch.randn(2, 3), index=torch.tensor([0, 1]))
    out = fm(torch.randn(3, 5), index=torch.tensor([1, 2, 3]))
    assert fm.classwise_acc.shape == (5,) and out.weights.shape == (3,)
    with pytest.raises(ValueError, match="fewer"):
        fm(torch.randn(2, 4), index=torch.tensor([0, 1]))


def test_distribution_alignment_grows_with_classes():
    da = DistributionAlignment(momentum=0.9)
    da(torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
    out = da(torch.full((2, 4), 0.25), update=False)
    assert da.p_model.shape == (4,)
    assert da.p_model.sum().item() == pytest.approx(1.0)
    assert torch.allclose(out.sum(1), torch.ones(2))


@pytest.mark.parametrize("name", ["fixmatch", "softmatch", "flexmatch"])
def test_state_dict_round_trip(name):
    torch.manual_seed(0)
    a = make_pseudo_labeler(name, num_unlabeled=8)
    for _ in range(3):
        a(torch.randn(4, 3) * 3, index=torch.randint(0, 8, (4,)))
    b = make_pseudo_labeler(name, num_unlabeled=8)
    b.load_state_dict(a.state_dict())
    logits, index = torch.randn(5, 3) * 3, torch.arange(5)
    ra, rb = a(logits, index=index), b(logits, index=index)
    assert torch.equal(ra.targets, rb.targets)
    assert torch.allclose(ra.weights, rb.weights)
    for key, value in a.state_dict().items():
        other = b.state_dict()[key]
        assert (
            value is None
            and other is None
            or torch.allclose(value.float(), other.float())
        )


def test_bad_arguments():
    with pytest.raises(ValueError, match="threshold"):
        FixMatch(threshold=1.5)
    with pytest.raises(ValueError, match="n_sigma"):
        SoftMatch(n_sigma=0)
    with pytest.raises(ValueError, match="num_unlabeled"):
        FlexMatch(num_unlabeled=0)
    with pytest.raises(ValueError, match="algorithm"):
        make_pseudo_labeler("mixmatch")
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        FixMatch()(torch.randn(4))


def _two_batches(labeler_a, labeler_b, valid):
    """Feed the same two batches to both labellers: ``labeler_a`` with
    ``valid=`` on the whole batch, ``labeler_b`` on the valid rows alone."""
    g = torch.Generator().manual_seed(3)
    outs = []
    for _ in range(2):
        logits = torch.randn(8, 4, generator=g) * 3
        index = torch.randperm(16, generator=g)[:8]
        a = labeler_a(logits, index=index, valid=valid)
        b = labeler_b(logits[valid], index=index[valid])
        outs.append((a, b))
    return outs


@pytest.mark.parametrize("name", ["fixmatch", "softmatch", "flexmatch"])
def test_rows_outside_valid_never_reach_the_statistics(name):
    """``valid=`` (the device-side selection) gives the statistics and the
    weights of the valid rows that the valid rows alone give."""
    kwargs = {"num_unlabeled": 16, "threshold": 0.5} if name == "flexmatch" else {}
    a = make_pseudo_labeler(name, **kwargs)
    b = make_pseudo_labeler(name, **kwargs)
    valid = torch.tensor([True, False, True, True, False, True, True, True])
    for out_a, out_b in _two_batches(a, b, valid):
        torch.testing.assert_close(out_a.weights[valid], out_b.weights)
        torch.testing.assert_close(out_a.probs[valid], out_b.probs)
        assert torch.equal(out_a.targets[valid], out_b.targets)
    for key, value in b.state_dict().items():
        torch.testing.assert_close(a.state_dict()[key], value)
    if name == "flexmatch":
        assert int((a.selected_label >= 0).sum()) > 0  # the table did move


def test_a_batch_without_valid_rows_leaves_the_statistics_unchanged():
    softmatch = SoftMatch()
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    softmatch(logits)
    before = {k: v.clone() for k, v in softmatch.state_dict().items()}
    softmatch(logits * 5, valid=torch.zeros(6, dtype=torch.bool))
    for key, value in before.items():
        assert torch.equal(softmatch.state_dict()[key], value), key
    # one valid row: the alignment moves towards it, mean and variance do not
    softmatch(logits * 5, valid=torch.eye(6, dtype=torch.bool)[2])
    row = (logits[2] * 5).softmax(-1)
    expected = before["p_model"] * 0.999 + 0.001 * row
    torch.testing.assert_close(softmatch.alignment.p_model, expected)
    for key in ("prob_max_mu", "prob_max_var"):
        assert torch.equal(softmatch.state_dict()[key], before[key]), key
    fresh = SoftMatch()
    out = fresh(logits, valid=torch.zeros(6, dtype=torch.bool))
    # a first batch without a valid row starts the alignment at uniform
    torch.testing.assert_close(fresh.alignment.p_model, torch.full((3,), 1 / 3))
    torch.testing.assert_close(out.probs, logits.softmax(-1))
    with pytest.raises(ValueError, match="valid must be a bool tensor"):
        fresh(logits, valid=torch.ones(6))
