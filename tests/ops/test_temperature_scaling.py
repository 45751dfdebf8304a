"""Temperature scaling against a brute-force search of the temperature, on the
logits of a real classifier (digits)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from avalanche_mixplugins.calibration import T_MIN, fit_temperature, scaled_nll


@pytest.fixture(scope="module")
def digit_logits():
    """Logits of a linear classifier trained (over-confidently) on 200 digits,
    on 500 other digits."""
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    torch.manual_seed(0)
    w = torch.zeros(64, 10, requires_grad=True)
    opt = torch.optim.SGD([w], lr=2.0)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(x[:200] @ w, y[:200]).backward()
        opt.step()
    return (x[1000:1500] @ w).detach(), y[1000:1500]


def brute_force_nll(z: np.ndarray, y: np.ndarray, t: float) -> float:
    """Mean NLL of softmax(z / t), written out with numpy."""
    s = z / t
    s = s - s.max(axis=1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


@pytest.mark.parametrize("scale", [1.0, 4.0, 0.2])
def test_fitted_temperature_is_the_grid_minimum(digit_logits, scale):
    z, y = digit_logits
    z = z * scale  # over- and under-confident versions of the same model
    t = fit_temperature(z, y)
    zn, yn = z.double().numpy(), y.numpy()
    grid = np.exp(np.linspace(math.log(0.05), math.log(20.0), 4001))
    nll = np.array([brute_force_nll(zn, yn, g) for g in grid])
    best = grid[nll.argmin()]
    step = grid[1] / grid[0]
    assert best / step <= t <= best * step
    assert brute_force_nll(zn, yn, t) <= nll.min() + 1e-9
    assert scaled_nll(z, y, t) == pytest.approx(brute_force_nll(zn, yn, t), rel=1e-9)
    # the scale of the logits comes back in the temperature
    assert (t > 1.0) == (scale > 1.0) or scale == 1.0


def test_all_correct_with_margin_sharpens_to_the_bound():
    z = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.5, 1.5]])
    y = torch.tensor([0, 1, 2])
    assert fit_temperature(z, y) == pytest.approx(T_MIN, rel=1e-5)


def test_bad_input():
    with pytest.raises(ValueError, match="labels"):
        fit_temperature(torch.zeros(3, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="t_min"):
        fit_temperature(
            torch.zeros(3, 2), torch.tensor([0, 1, 1]), t_min=2.0, t_max=1.0
        )
