"""Calibration maths against numpy references and torchmetrics (no Avalanche)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from avalanche_mixplugins.calibration import (
    BrierScore,
    ExpectedCalibrationError,
    MaximumCalibrationError,
    NegativeLogLikelihood,
)
from tests.support.calibration_reference import np_reference


def run(metric, batches):
    for z, y in batches:
        metric.update(torch.as_tensor(z), torch.as_tensor(y))
    return metric.result()


@pytest.mark.parametrize("n_bins", [15, 10, 4])
def test_metrics_match_numpy_and_torchmetrics(n_bins):
    rng = np.random.default_rng(n_bins)
    logits = (rng.normal(size=(500, 7)) * 2.5).astype(np.float32)
    labels = rng.integers(0, 7, size=500)
    # half the labels follow the arg-max so confidence and accuracy vary together
    labels[:250] = logits[:250].argmax(1)
    ece, mce, nll, brier = np_reference(logits, labels, n_bins)
    batches = [(logits[i : i + 64], labels[i : i + 64]) for i in range(0, 500, 64)]
    assert run(ExpectedCalibrationError(n_bins=n_bins), batches) == pytest.approx(
        ece, abs=1e-5
    )
    assert run(MaximumCalibrationError(n_bins=n_bins), batches) == pytest.approx(
        mce, abs=1e-5
    )
    assert run(NegativeLogLikelihood(), batches) == pytest.approx(nll, rel=1e-6)
    assert run(BrierScore(), batches) == pytest.approx(brier, rel=1e-6)
    # torchmetrics' own numbers on the whole set
    z, y = torch.from_numpy(logits), torch.from_numpy(labels)
    tm_ece = multiclass_calibration_error(z.softmax(1), y, 7, n_bins=n_bins, norm="l1")
    tm_mce = multiclass_calibration_error(z.softmax(1), y, 7, n_bins=n_bins, norm="max")
    assert tm_ece.item() == pytest.approx(ece, abs=1e-5)
    assert tm_mce.item() == pytest.approx(mce, abs=1e-5)
    assert torch.nn.functional.cross_entropy(z, y).item() == pytest.approx(
        nll, rel=1e-5
    )


def test_growing_head_and_labels_outside_the_head():
    rng = np.random.default_rng(0)
    z_small = rng.normal(size=(40, 3)).astype(np.float32) * 3
    y_small = rng.integers(0, 5, size=40)  # labels 3 and 4 are not in the head
    z_big = rng.normal(size=(60, 5)).astype(np.float32) * 3
    y_big = rng.integers(0, 5, size=60)
    pad = np.full((40, 2), -np.inf, dtype=np.float32)  # probability 0
    ref = np_reference(
        np.concatenate([np.concatenate([z_small, pad], 1), z_big]),
        np.concatenate([y_small, y_big]),
        15,
    )
    batches = [(z_small, y_small), (z_big, y_big)]
    got = [
        run(ExpectedCalibrationError(), batches),
        run(MaximumCalibrationError(), batches),
        run(NegativeLogLikelihood(), batches),
        run(BrierScore(), batches),
    ]
    assert got == pytest.approx(list(ref), rel=1e-5, abs=1e-6)
    # an unseen label has probability 0: NLL -log(eps), Brier 1 + sum p^2
    nll = NegativeLogLikelihood(eps=1e-6)
    nll.update(torch.zeros(1, 2), torch.tensor([4]))
    assert nll.result() == pytest.approx(-np.log(1e-6))
    brier = BrierScore()
    brier.update(torch.zeros(1, 2), torch.tensor([4]))
    assert brier.result() == pytest.approx(1.5)


def test_reset_empty_and_bad_arguments():
    ece = ExpectedCalibrationError()
    assert np.isnan(ece.result())
    ece.update(torch.tensor([[5.0, 0.0]]), torch.tensor([0]))
    assert ece.result() > 0
    ece.reset()
    assert np.isnan(ece.result())
    with pytest.raises(ValueError, match="n_bins"):
        ExpectedCalibrationError(n_bins=0)
    with pytest.raises(ValueError, match="labels"):
        BrierScore().update(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        BrierScore().update(torch.zeros(3), torch.zeros(3, dtype=torch.long))
