"""The pseudo-labelling base class: the cases the generated mutations of
``ssl_ext/algorithms/base.py`` showed untested (empty and one-row batches,
error messages, the weights' dtype, state loading and moving, ``repr``),
each against a hand-worked value."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_ext.algorithms import FixMatch, FlexMatch
from ssl_ext.algorithms.base import PseudoLabeler, consistency_loss
from ssl_ext.algorithms.softmatch import DistributionAlignment, SoftMatch


class Counting(PseudoLabeler):
    """A minimal rule: weight 1 (in float64) and a count of updated batches,
    kept as a tensor next to a plain integer."""

    def __init__(self):
        self.batches = torch.zeros(())
        self.tag = 3

    def _weights(self, probs, max_probs, targets, *, index, update, valid=None):
        if update:
            self.batches = self.batches + 1
        return torch.ones(max_probs.shape, dtype=torch.float64)

    def state_dict(self):
        return {"batches": self.batches, "tag": self.tag}


def test_empty_and_one_row_batches_by_hand():
    empty = torch.zeros(0, 3, requires_grad=True)
    loss = consistency_loss(empty, torch.zeros(0, dtype=torch.long), torch.zeros(0))
    assert loss.item() == 0.0 and loss.requires_grad
    # one row: CE of [0, ln 2, 0] at class 1 is ln(4) - ln 2 = ln 2, weight 0.5
    one = torch.tensor([[0.0, math.log(2.0), 0.0]])
    got = consistency_loss(one, torch.tensor([1]), torch.tensor([0.5]))
    assert got.item() == pytest.approx(0.5 * math.log(2.0), rel=1e-6)
    soft = consistency_loss(one, torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([0.5]))
    assert soft.item() == pytest.approx(0.5 * math.log(2.0), rel=1e-6)


def test_float64_weights_give_a_float32_loss():
    logits = torch.zeros(2, 2)
    got = consistency_loss(
        logits, torch.tensor([0, 1]), torch.ones(2, dtype=torch.float64)
    )
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(math.log(2.0), rel=1e-6)


def test_call_errors_name_the_expected_shapes():
    rule = FixMatch()
    logits = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"index has shape \(3,\), expected \(4,\)"):
        rule(logits, index=torch.arange(3))
    with pytest.raises(ValueError, match=r"shape \(4,\), got torch.bool \(2,\)"):
        rule(logits, valid=torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"^Counting does not take valid=$"):
        Counting()(logits, valid=torch.ones(4, dtype=torch.bool))


def test_weights_come_back_in_float32():
    out = Counting()(torch.tensor([[0.0, 2.0], [1.0, -1.0]]))
    assert out.weights.dtype == torch.float32 and out.weights.tolist() == [1.0, 1.0]
    assert out.targets.tolist() == [1, 0]


def test_load_state_dict_copies_tensors_keeps_the_rest_and_rejects_unknown_keys():
    rule = Counting()
    saved = {"batches": torch.tensor(5.0), "tag": 7}
    rule.load_state_dict(saved)
    saved["batches"].add_(1.0)  # the rule holds a copy, not the saved tensor
    assert rule.batches.item() == 5.0 and rule.tag == 7
    with pytest.raises(ValueError, match=r"^unexpected keys in state dict: \['x'\]$"):
        rule.load_state_dict({"batches": torch.tensor(1.0), "x": 1})


def test_to_moves_the_statistics_and_keeps_the_rest():
    rule = Counting()
    rule.load_state_dict({"batches": torch.tensor(2.0), "tag": 4})
    assert rule.to("cpu") is rule
    assert rule.batches.item() == 2.0 and rule.tag == 4


def test_repr_lists_the_numeric_settings():
    assert repr(FixMatch(threshold=0.9)) == "FixMatch(threshold=0.9)"
    assert repr(Counting()) == "Counting(tag=3)"
    # several settings are joined by ", " (a bool is an int, so it is listed)
    flex = FlexMatch(num_unlabeled=10, threshold=0.9, warmup=False)
    assert repr(flex) == "FlexMatch(num_unlabeled=10, threshold=0.9, warmup=False)"


# FlexMatch (``ssl_ext/algorithms/flexmatch.py``), by hand. Two classes; the
# logits [0, 0] give probabilities exactly 0.5 and the target 0 (first max).
TIE = torch.zeros(1, 2)


def test_flexmatch_arguments_are_checked_with_their_names():
    FlexMatch(num_unlabeled=1)  # one unlabeled sample is a valid table
    with pytest.raises(ValueError, match=r"^threshold must be in \[0, 1\], got 1.5$"):
        FlexMatch(num_unlabeled=3, threshold=1.5)
    rule = FlexMatch(num_unlabeled=3)
    assert rule.state_dict()["classwise_acc"].shape == (0,)  # no class yet
    with pytest.raises(ValueError, match=r"^FlexMatch needs the dataset indices"):
        rule(TIE)
    with pytest.raises(
        ValueError, match=r"^selected_label has shape \(4,\), expected \(3,\)$"
    ):
        rule.load_state_dict(FlexMatch(num_unlabeled=4).state_dict())


def test_flexmatch_ties_are_selected_and_kept():
    """Threshold 0.5, no warm-up, 4 samples. Call 1 (sample 0, p = 0.5 >= 0.5):
    selected as class 0, so sigma = [1, 0], beta = [1, 0] and the class-0
    threshold becomes 0.5 * 1 / (2 - 1) = 0.5. Call 2 (sample 1, p = 0.5)
    meets it exactly: weight 1."""
    rule = FlexMatch(num_unlabeled=4, threshold=0.5, warmup=False)
    rule(TIE, index=torch.tensor([0]))
    assert rule.selected_label.tolist() == [0, -1, -1, -1]
    assert rule.class_thresholds().tolist() == [0.5, 0.0]
    assert rule(TIE, index=torch.tensor([1])).weights.tolist() == [1.0]


def test_flexmatch_warms_up_by_default():
    """Default warm-up, threshold 0.5, 4 samples: after selecting sample 0 as
    class 0, sigma = [1, 0] and 3 samples are unused, so
    beta_0 = 1 / max(1, 3) = 1/3 and the threshold 0.5 * (1/3) / (5/3) = 0.1."""
    rule = FlexMatch(num_unlabeled=4, threshold=0.5)
    rule(TIE, index=torch.tensor([0]))
    assert rule.class_thresholds().tolist() == pytest.approx([0.1, 0.0])


def test_flexmatch_stops_refreshing_once_no_sample_is_unused():
    """One sample: selecting it makes max sigma = N = 1, so beta is not
    refreshed and stays 0 (threshold 0): a later low-confidence sample of
    class 0 keeps weight 1."""
    rule = FlexMatch(num_unlabeled=1, threshold=0.5)
    rule(torch.tensor([[3.0, 0.0]]), index=torch.tensor([0]))
    assert rule.selected_label.tolist() == [0]
    assert rule.class_thresholds().tolist() == [0.0, 0.0]
    assert rule(TIE, index=torch.tensor([0])).weights.tolist() == [1.0]


def test_flexmatch_state_round_trip_restores_the_thresholds():
    rule = FlexMatch(num_unlabeled=4, threshold=0.5, warmup=False)
    rule(TIE, index=torch.tensor([0]))
    assert set(rule.state_dict()) == {"selected_label", "classwise_acc"}
    copy = FlexMatch(num_unlabeled=4, threshold=0.5, warmup=False)
    copy.load_state_dict(rule.state_dict())
    assert copy.class_thresholds().tolist() == [0.5, 0.0]
    assert copy.selected_label.tolist() == [0, -1, -1, -1]


# SoftMatch (``ssl_ext/algorithms/softmatch.py``), by hand. Rows with logits
# [ln 3, 0] and [0, 0] have max probabilities 0.75 and 0.5: mean 0.625,
# unbiased variance 2 * 0.125^2 / 1 = 0.03125. From the start mu = 1/2,
# var = 1, one update at momentum 0.5 gives mu = 0.5625, var = 0.515625.
TWO_ROWS = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
MU, VAR = 0.5625, 0.515625


def _softmatch_weight(p, n_sigma):
    return math.exp(-(min(p - MU, 0.0) ** 2) / (2 * VAR / n_sigma**2))


def test_softmatch_arguments_and_defaults():
    assert DistributionAlignment().momentum == 0.999
    for make in (DistributionAlignment, SoftMatch):
        with pytest.raises(
            ValueError, match=r"^momentum must be in \[0, 1\], got 1.5$"
        ):
            make(momentum=1.5)
    SoftMatch(n_sigma=0.5)  # any positive width
    fresh = SoftMatch().state_dict()
    assert fresh["prob_max_mu"] is None and fresh["prob_max_var"] is None
    # the default width is 2 standard deviations
    rule = SoftMatch(momentum=0.5, dist_align=False)
    weights = rule(TWO_ROWS).weights.tolist()
    assert weights == pytest.approx([1.0, _softmatch_weight(0.5, 2.0)], rel=1e-6)


def test_softmatch_valid_rows_give_the_statistics_of_those_rows():
    rule = SoftMatch(momentum=0.5, dist_align=False)
    rows = torch.cat([TWO_ROWS, torch.tensor([[5.0, 0.0]])])
    rule(rows, valid=torch.tensor([True, True, False]))
    assert rule.prob_max_mu.item() == pytest.approx(MU, rel=1e-6)
    assert rule.prob_max_var.item() == pytest.approx(VAR, rel=1e-6)


def test_softmatch_one_row_leaves_the_statistics_as_they_were():
    rule = SoftMatch(momentum=0.5, dist_align=False)
    rule(TWO_ROWS[:1])
    assert rule.prob_max_mu.item() == 0.5 and rule.prob_max_var.item() == 1.0


def test_alignment_by_hand():
    # a single first row starts p_model at itself and is aligned to uniform
    da = DistributionAlignment(momentum=0.5)
    out = da(torch.tensor([[0.75, 0.25]]))
    assert da.p_model.tolist() == [0.75, 0.25]
    assert out[0].tolist() == pytest.approx([0.5, 0.5])
    # an empty batch does not start it
    empty = DistributionAlignment()
    empty(torch.zeros(0, 2))
    assert empty.p_model is None
    # one valid row is enough to start it
    one = DistributionAlignment()
    one(torch.tensor([[0.75, 0.25], [0.1, 0.9]]), valid=torch.tensor([True, False]))
    assert one.p_model.tolist() == [0.75, 0.25]
    # label-only calls of SoftMatch do not move it
    rule = SoftMatch()
    rule(TWO_ROWS, update=False)
    assert rule.alignment.p_model is None
    three = DistributionAlignment()
    three(torch.full((1, 3), 1 / 3))
    with pytest.raises(
        ValueError, match=r"^got 2 classes, fewer than the 3 already tracked$"
    ):
        three(torch.full((1, 2), 0.5))


def test_alignment_and_softmatch_states_load_with_or_without_values():
    da = DistributionAlignment()
    da(torch.tensor([[0.75, 0.25]]))
    assert set(da.state_dict()) == {"p_model"}
    copy = DistributionAlignment()
    copy.load_state_dict(da.state_dict())
    assert copy.p_model.tolist() == [0.75, 0.25]
    copy.load_state_dict({"p_model": None})
    assert copy.p_model is None
    SoftMatch().load_state_dict(SoftMatch().state_dict())  # nothing seen yet
    plain = SoftMatch(dist_align=False)
    plain.load_state_dict({"prob_max_mu": torch.tensor(0.5), "prob_max_var": None})
    assert plain.prob_max_mu.item() == 0.5 and plain.prob_max_var is None
    with pytest.raises(ValueError, match=r"^unexpected keys in state dict: \['x'\]$"):
        plain.load_state_dict({"prob_max_mu": None, "prob_max_var": None, "x": 1})
