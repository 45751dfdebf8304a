"""Post-hoc temperature scaling (pure tensor code, no Avalanche).

Guo, Pleiss, Sun, Weinberger. "On Calibration of Modern Neural Networks".
ICML 2017. https://arxiv.org/abs/1706.04599

One scalar ``T > 0`` divides the logits of a trained model; it is fitted by
minimising the negative log-likelihood of held-out labeled samples and does
not change the arg-max (so accuracy is unchanged). The NLL of
``softmax(beta * z)`` is convex in ``beta = 1 / T`` (a log-sum-exp of linear
functions of ``beta`` minus a linear term), so a golden-section search over
``beta`` on a bracket finds its minimum on that bracket; no optimiser state,
no learning rate.

This is what a user would do instead of training with a calibration method:
the comparison in ``docs/results_ssl.md`` fits ``T`` on the labeled samples
(all a few-label user has) and on a small held-out labeled split.

Runs post hoc, once per model: it synchronises with the host (the search
compares scalars), never inside a training step.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

T_MIN = 0.05
"""Smallest temperature searched (a sharpening of 20x)."""
T_MAX = 20.0
"""Largest temperature searched."""

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def _check(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    if logits.dim() != 2:
        raise ValueError(f"expected logits of shape (N, C), got {tuple(logits.shape)}")
    labels = labels.reshape(-1)
    if labels.shape[0] != logits.shape[0] or labels.shape[0] == 0:
        raise ValueError(
            f"need one label per row and at least one row, got {logits.shape[0]} "
            f"rows and {labels.shape[0]} labels"
        )
    if labels.is_floating_point():
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    if int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]:
        raise ValueError(f"labels must be in [0, {logits.shape[1]})")
    return logits.detach().double(), labels.long().to(logits.device)


def scaled_nll(logits: Tensor, labels: Tensor, temperature: float) -> float:
    """Mean negative log-likelihood of ``softmax(logits / temperature)``."""
    z, y = _check(logits, labels)
    return float(torch.nn.functional.cross_entropy(z / float(temperature), y))


def fit_temperature(
    logits: Tensor,
    labels: Tensor,
    *,
    t_min: float = T_MIN,
    t_max: float = T_MAX,
    tol: float = 1e-6,
) -> float:
    """The temperature in ``[t_min, t_max]`` that minimises the NLL of
    ``softmax(logits / T)`` against ``labels``.

    Golden-section search over ``beta = 1 / T`` in ``[1 / t_max, 1 / t_min]``
    (the NLL is convex in ``beta``) down to a bracket of relative width
    ``tol``. A result at ``t_min`` or ``t_max`` means the minimum lies outside
    the bracket (e.g. ``t_min`` when every sample is classified correctly:
    the NLL then falls as the logits sharpen).

    :param logits: ``(N, C)`` logits of the samples the temperature is fitted on.
    :param labels: ``(N,)`` integer labels.
    :return: ``T`` (a Python float).
    """
    if not 0 < t_min < t_max:
        raise ValueError(f"need 0 < t_min < t_max, got {t_min}, {t_max}")
    z, y = _check(logits, labels)

    def nll(beta: float) -> float:
        return float(torch.nn.functional.cross_entropy(z * beta, y))

    lo, hi = 1.0 / t_max, 1.0 / t_min
    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fa, fb = nll(a), nll(b)
    while hi - lo > tol * hi:
        if fa <= fb:  # the minimum is in [lo, b]
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = nll(a)
        else:  # in [a, hi]
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = nll(b)
    candidates = [(nll(1.0 / t_max), 1.0 / t_max), (nll(1.0 / t_min), 1.0 / t_min)]
    candidates.append((nll((lo + hi) / 2), (lo + hi) / 2))
    beta = min(candidates)[1]
    return 1.0 / beta


__all__ = ["T_MAX", "T_MIN", "fit_temperature", "scaled_nll"]
