"""CalibrateMix's mixed batch and loss: the cases the generated mutations of
``ssl_ext/calibratemix/mixed_batch.py`` showed untested (the error messages,
the default label check, a float64 ``lam``, the generator reaching every draw,
the scores kept in the split), each against a hand-worked value or a loop."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_ext.calibratemix import calibratemix_loss, make_mixed_batch


def _batch(seed=0, b=6, u=16):
    g = torch.Generator().manual_seed(seed)
    x_lab = torch.rand(b, 1, 3, 3, generator=g)
    x_ulb = torch.rand(u, 1, 3, 3, generator=g)
    return x_lab, x_ulb, torch.randn(b, generator=g), torch.randn(u, generator=g)


def test_a_wrong_score_shape_is_named_with_both_shapes():
    x_lab, x_ulb, aum, apm = _batch()
    with pytest.raises(
        ValueError, match=r"shapes \(6,\) and \(16,\), got \(5,\) and \(16,\)"
    ):
        make_mixed_batch(x_lab, x_ulb, aum[:5], apm)
    with pytest.raises(ValueError, match=r"got \(6,\) and \(2, 8\)"):
        make_mixed_batch(x_lab, x_ulb, aum, apm.view(2, 8))


def test_loss_errors_name_the_argument_and_its_shape():
    logits = torch.zeros(4, 3)
    ok = torch.zeros(4, dtype=torch.long)
    lam, group = torch.full((4,), 0.5), torch.tensor([0, 0, 1, 1])
    with pytest.raises(
        ValueError, match=r"^expected logits of shape \(B, C\), got \(4,\)$"
    ):
        calibratemix_loss(logits[:, 0], ok, ok, lam, group)
    cases = {
        "labels": (ok[:3], ok, lam),
        "pseudo_labels": (ok, ok[:2], lam),
        "lam": (ok, ok, lam[:1]),
    }
    for name, (y, yhat, lm) in cases.items():
        n = {"labels": 3, "pseudo_labels": 2, "lam": 1}[name]
        with pytest.raises(
            ValueError, match=rf"^{name} must have shape \(4,\), got \({n},\)$"
        ):
            calibratemix_loss(logits, y, yhat, lm, group)


def test_labels_out_of_range_are_reported_by_default():
    logits = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        calibratemix_loss(
            logits,
            torch.tensor([0, 3]),
            torch.tensor([1, 1]),
            torch.tensor([0.5, 0.5]),
            torch.tensor([0, 1]),
        )


def test_a_float64_lam_gives_the_float32_loss_of_a_loop():
    """BCE by hand: per class ``log(1 + e^z) - t z``, averaged over the
    classes; per group the mean over its samples; the groups summed."""
    logits = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0], [-0.5, 0.25, 2.0]])
    y, yhat = [0, 1, 2], [2, 0, 2]
    lam = torch.tensor([0.3, 0.8, 0.6], dtype=torch.float64)
    group = torch.tensor([0, 1, 1])
    per = []
    for i in range(3):
        t = [
            float(lam[i]) * (c == y[i]) + (1 - float(lam[i])) * (c == yhat[i])
            for c in range(3)
        ]
        z = logits[i].tolist()
        per.append(sum(math.log1p(math.exp(z[c])) - t[c] * z[c] for c in range(3)) / 3)
    expected = per[0] + (per[1] + per[2]) / 2
    got = calibratemix_loss(logits, torch.tensor(y), torch.tensor(yhat), lam, group)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_the_generator_alone_decides_partners_and_lambdas():
    x_lab, x_ulb, aum, apm = _batch(1)
    runs = []
    for global_seed, seed in ((1, 5), (2, 5), (3, 6)):
        torch.manual_seed(global_seed)
        g = torch.Generator().manual_seed(seed)
        runs.append(
            make_mixed_batch(x_lab, x_ulb, aum, apm, k_fraction=0.5, generator=g)
        )
    a, b, c = runs
    assert torch.equal(a.partner, b.partner) and torch.equal(a.lam, b.lam)
    assert torch.equal(a.x, b.x)
    # another generator seed draws other partners and lambdas (k = 8 here)
    assert not torch.equal(a.partner, c.partner) and not torch.equal(a.lam, c.lam)


def test_the_split_keeps_the_scores_it_was_taken_from():
    x_lab, x_ulb, aum, apm = _batch(2)
    m = make_mixed_batch(
        x_lab, x_ulb, aum, apm, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(m.split.labeled_scores, aum)
    assert torch.equal(m.split.unlabeled_scores, apm)
