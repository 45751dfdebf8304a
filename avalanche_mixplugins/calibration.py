"""Calibration of a classifier's predicted distribution, as running metrics.

Four quantities of ``p = softmax(z)`` over the samples seen since the last
``reset`` (``update(logits, labels)`` adds a batch, ``result()`` reads the
value, ``nan`` before any sample):

* **ECE**, expected calibration error: top-label confidence ``max_c p_c``
  binned in ``n_bins`` equal-width bins of ``[0, 1]`` (15 by default), the
  bin-size-weighted mean of ``|accuracy - confidence|`` (Guo, Pleiss, Sun,
  Weinberger. "On Calibration of Modern Neural Networks". ICML 2017.
  https://arxiv.org/abs/1706.04599; Naeini, Cooper, Hauskrecht, AAAI 2015).
* **MCE**, maximum calibration error: the largest bin gap.
* **NLL**, mean negative log-likelihood ``-log p_y`` (``p_y`` clamped below
  at ``eps``).
* **Brier** score, mean over samples of ``sum_c (p_c - 1[c = y])^2``
  (Brier, Monthly Weather Review 1950), in ``[0, 2]``.

ECE and MCE are torchmetrics' ``MulticlassCalibrationError`` with norm
``"l1"`` and ``"max"``; the binning is not re-implemented here. NLL and Brier
keep two running sums.

Growing and partial heads: the width of the logits may change between
updates (class-incremental models whose classifier grows), and labels may be
outside the model's columns (a class the head does not have yet). Such a
label gets probability 0: it is never predicted (counts as an error in ECE
and MCE), its NLL is ``-log(eps)`` and it adds 1 to the Brier score.

The classes follow Avalanche's standalone ``Metric`` protocol
(``update``/``result``/``reset``) without importing Avalanche;
:mod:`avalanche_mixplugins.metrics` turns them into evaluation plugin
metrics.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics.classification import MulticlassCalibrationError

from avalanche_mixplugins.validation import check_n_bins

DEFAULT_EPS = 1e-12


def probabilities_and_labels(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax probabilities padded with zero columns so every label has one.

    :param logits: ``(N, C)`` logits (float; any device).
    :param labels: ``(N,)`` integer labels, possibly ``>= C``.
    :return: ``(probs, labels)`` on the CPU in float64/int64, ``probs`` of
        shape ``(N, max(C, max(labels) + 1))``.
    """
    if logits.dim() != 2:
        raise ValueError(f"expected logits of shape (N, C), got {tuple(logits.shape)}")
    labels = labels.reshape(-1)
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"{logits.shape[0]} rows of logits but {labels.shape[0]} labels"
        )
    if labels.is_floating_point():
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    probs = logits.detach().to("cpu", torch.float64).softmax(dim=-1)
    labels = labels.detach().to("cpu", torch.int64)
    if labels.numel() and labels.min() < 0:
        raise ValueError("labels must be non-negative")
    width = max(probs.shape[1], int(labels.max()) + 1 if labels.numel() else 0)
    if width > probs.shape[1]:
        pad = probs.new_zeros(probs.shape[0], width - probs.shape[1])
        probs = torch.cat([probs, pad], dim=1)
    return probs, labels


class _BinnedCalibrationError:
    """Top-label calibration error over torchmetrics' binning (norm set by the subclass)."""

    norm = "l1"

    def __init__(self, *, n_bins: int = 15):
        self.n_bins = check_n_bins(n_bins)
        self.reset()

    @torch.no_grad()
    def update(self, logits: Tensor, labels: Tensor) -> None:
        """Add a batch of logits ``(N, C)`` and integer labels ``(N,)``."""
        probs, labels = probabilities_and_labels(logits, labels)
        if labels.numel() == 0:
            return
        # the class count only serves torchmetrics' argument checks, which are
        # off because the head may grow between updates
        self._metric.update(probs, labels)
        self._n += labels.numel()

    def result(self) -> float:
        """Current value (``nan`` before any sample)."""
        if self._n == 0:
            return math.nan
        return float(self._metric.compute())

    def reset(self) -> None:
        self._metric = MulticlassCalibrationError(
            num_classes=2, n_bins=self.n_bins, norm=self.norm, validate_args=False
        )
        self._n = 0


class ExpectedCalibrationError(_BinnedCalibrationError):
    """Expected calibration error (torchmetrics, norm ``"l1"``).

    :param n_bins: equal-width confidence bins (15).
    """

    norm = "l1"


class MaximumCalibrationError(_BinnedCalibrationError):
    """Maximum calibration error (torchmetrics, norm ``"max"``).

    :param n_bins: equal-width confidence bins (15).
    """

    norm = "max"


class _MeanPerSample:
    """Running mean over samples of a per-sample quantity of ``(probs, labels)``."""

    def __init__(self):
        self.reset()

    def batch_sum(self, probs: Tensor, labels: Tensor) -> Tensor:
        """The quantity summed over a batch (probabilities from
        :func:`probabilities_and_labels`)."""
        raise NotImplementedError

    @torch.no_grad()
    def update(self, logits: Tensor, labels: Tensor) -> None:
        """Add a batch of logits ``(N, C)`` and integer labels ``(N,)``."""
        probs, labels = probabilities_and_labels(logits, labels)
        self._sum += float(self.batch_sum(probs, labels))
        self._n += labels.numel()

    def result(self) -> float:
        """Current value (``nan`` before any sample)."""
        return self._sum / self._n if self._n else math.nan

    def reset(self) -> None:
        self._sum = 0.0
        self._n = 0


class NegativeLogLikelihood(_MeanPerSample):
    """Mean negative log-likelihood of the labels under ``softmax(logits)``.

    :param eps: lower clamp of the label's probability (labels outside the
        head have probability 0 and would give an infinite NLL).
    """

    def __init__(self, *, eps: float = DEFAULT_EPS):
        if not 0 < eps < 1:
            raise ValueError(f"eps must be in (0, 1), got {eps}")
        self.eps = float(eps)
        super().__init__()

    def batch_sum(self, probs: Tensor, labels: Tensor) -> Tensor:
        p_y = probs.gather(1, labels[:, None]).squeeze(1)
        return -(p_y.clamp_min(self.eps).log()).sum()


class BrierScore(_MeanPerSample):
    """Multi-class Brier score: mean of ``sum_c (p_c - onehot(y)_c)^2``."""

    def batch_sum(self, probs: Tensor, labels: Tensor) -> Tensor:
        onehot = torch.zeros_like(probs).scatter_(1, labels[:, None], 1.0)
        return ((probs - onehot) ** 2).sum()


# ------------------------------------------------- temperature scaling
# Guo, Pleiss, Sun, Weinberger. "On Calibration of Modern Neural Networks".
# ICML 2017. https://arxiv.org/abs/1706.04599. One scalar T > 0 divides the
# logits of a trained model, fitted by minimising the NLL of held-out labeled
# samples (the arg-max, hence accuracy, is unchanged). The NLL of
# softmax(beta * z) is convex in beta = 1 / T, so a golden-section search
# over beta finds its minimum on the bracket. Post hoc, once per model: it
# synchronises with the host, never inside a training step.

T_MIN = 0.05
"""Smallest temperature searched (a sharpening of 20x)."""
T_MAX = 20.0
"""Largest temperature searched."""

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def _check_scaling_input(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
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
    z, y = _check_scaling_input(logits, labels)
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
    z, y = _check_scaling_input(logits, labels)

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


__all__ = [
    "T_MAX",
    "T_MIN",
    "fit_temperature",
    "scaled_nll",
    "DEFAULT_EPS",
    "BrierScore",
    "ExpectedCalibrationError",
    "MaximumCalibrationError",
    "NegativeLogLikelihood",
    "probabilities_and_labels",
]
