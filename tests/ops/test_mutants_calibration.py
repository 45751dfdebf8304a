"""Calibration metrics and temperature scaling: the cases the generated
mutations of ``avalanche_mixplugins/calibration.py`` showed untested (padding
width, float64 softmax, empty batches, argument bounds, the search bracket and
its end points), each against a hand-worked value."""

from __future__ import annotations

import math

import pytest
import torch

from avalanche_mixplugins.calibration import (
    T_MAX,
    T_MIN,
    BrierScore,
    ExpectedCalibrationError,
    MaximumCalibrationError,
    NegativeLogLikelihood,
    fit_temperature,
    probabilities_and_labels,
)

METRICS = (
    ExpectedCalibrationError,
    MaximumCalibrationError,
    NegativeLogLikelihood,
    BrierScore,
)


def test_padding_adds_exactly_the_missing_columns_in_float64_and_int64():
    z = torch.tensor([[1.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    probs, labels = probabilities_and_labels(z, torch.tensor([0, 4], dtype=torch.int32))
    assert probs.shape == (2, 5)  # columns 3 and 4 added for the label 4
    assert probs.dtype == torch.float64 and labels.dtype == torch.int64
    assert labels.tolist() == [0, 4]
    assert probs[:, 3:].abs().sum() == 0
    assert probs[1, :3].tolist() == pytest.approx([1 / 3] * 3, rel=1e-12)
    inside, _ = probabilities_and_labels(z, torch.tensor([2, 1]))
    assert inside.shape == (2, 3)  # every label has a column: nothing added
    empty, none = probabilities_and_labels(
        torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)
    )
    assert empty.shape == (0, 3) and none.shape == (0,)


def test_probabilities_are_computed_in_float64():
    # p_1 = 1 / (1 + e^120) = e^-120 underflows to 0 in float32 softmax; in
    # float64 the NLL is log(1 + e^120) = 120 + log(1 + e^-120) = 120.
    nll = NegativeLogLikelihood(eps=1e-300)
    nll.update(torch.tensor([[0.0, -120.0]]), torch.tensor([1]))
    assert nll.result() == pytest.approx(120.0, rel=1e-9)


@pytest.mark.parametrize("metric", METRICS)
def test_empty_batches_and_no_sample_give_nan(metric):
    m = metric()
    assert math.isnan(m.result())
    m.update(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    assert math.isnan(m.result())


def test_error_messages_name_the_counts_and_types():
    with pytest.raises(ValueError, match="^3 rows of logits but 2 labels$"):
        probabilities_and_labels(torch.zeros(3, 5), torch.tensor([0, 1]))
    with pytest.raises(
        ValueError, match="^labels must be integers, got torch.float32$"
    ):
        probabilities_and_labels(torch.zeros(2, 5), torch.zeros(2))
    with pytest.raises(ValueError, match="^labels must be non-negative$"):
        probabilities_and_labels(torch.zeros(2, 5), torch.tensor([0, -1]))


@pytest.mark.parametrize("eps", [0.0, 1.0, 1.5, -1e-3])
def test_nll_eps_must_lie_strictly_inside_zero_one(eps):
    with pytest.raises(ValueError, match=rf"^eps must be in \(0, 1\), got {eps}$"):
        NegativeLogLikelihood(eps=eps)


def test_scaling_input_checks_and_messages():
    with pytest.raises(
        ValueError, match=r"^expected logits of shape \(N, C\), got \(3,\)$"
    ):
        fit_temperature(torch.zeros(3), torch.tensor([0, 1, 1]))
    with pytest.raises(
        ValueError,
        match="^need one label per row and at least one row, got 3 rows and 2 labels$",
    ):
        fit_temperature(torch.zeros(3, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="got 0 rows and 0 labels"):
        fit_temperature(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    with pytest.raises(
        ValueError, match="^labels must be integers, got torch.float32$"
    ):
        fit_temperature(torch.zeros(2, 4), torch.zeros(2))
    # one row is enough: a correct prediction sharpens to the lower bound
    assert fit_temperature(
        torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    ) == pytest.approx(T_MIN, rel=1e-12)


@pytest.mark.parametrize("t_min, t_max", [(0.0, 1.0), (2.0, 2.0), (-1.0, 1.0)])
def test_temperature_bracket_must_be_positive_and_non_empty(t_min, t_max):
    z, y = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])
    with pytest.raises(ValueError, match="t_min < t_max"):
        fit_temperature(z, y, t_min=t_min, t_max=t_max)


def four_binary_samples(margin: float):
    """Every row ``(m / 2, -m / 2)``, three labels 0 and one label 1: the
    likelihood is ``3 log s(m / T) + log(1 - s(m / T))`` (``s`` the sigmoid),
    maximal where ``s(m / T) = 3 / 4``, i.e. ``T = m / log 3``."""
    z = torch.tensor([[margin / 2, -margin / 2]] * 4, dtype=torch.float64)
    return z, torch.tensor([0, 0, 0, 1])


@pytest.mark.parametrize("t_star, tol", [(15.0, 1e-6), (15.0, 1e-3), (0.3, 1e-3)])
def test_fitted_temperature_equals_the_closed_form(t_star, tol):
    z, y = four_binary_samples(t_star * math.log(3.0))
    t = fit_temperature(z, y, tol=tol)
    # the bracket in beta = 1 / T has relative width tol: so has T, to first order
    assert abs(t - t_star) / t_star <= tol


def test_minima_outside_the_bracket_return_the_bound_itself():
    # all wrong with a margin: the NLL falls as T grows, the optimum is T = inf
    z = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    assert fit_temperature(z, torch.tensor([1, 0])) == pytest.approx(T_MAX, rel=1e-12)
    assert fit_temperature(z, torch.tensor([1, 0]), t_max=7.0) == pytest.approx(
        7.0, rel=1e-12
    )
    # all right with a margin: T -> 0 (margins small enough that the NLL at
    # T_MIN, about e^-10, is not rounded to 0 in float64)
    z = torch.tensor([[0.5, 0.0], [0.0, 0.5]])
    assert fit_temperature(z, torch.tensor([0, 1])) == pytest.approx(T_MIN, rel=1e-12)
    assert fit_temperature(z, torch.tensor([0, 1]), t_min=0.5) == pytest.approx(
        0.5, rel=1e-12
    )
