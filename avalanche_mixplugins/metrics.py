"""Calibration metrics as Avalanche plugin metrics (built on torchmetrics).

Four metrics of a classifier's predicted distribution ``p = softmax(z)``:

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

The plugin metrics follow Avalanche's ``accuracy_metrics``: one standalone
metric (``update``/``result``/``reset``), ``GenericPluginMetric`` subclasses
that read ``strategy.mb_output`` and ``strategy.mb_y`` at evaluation time,
and :func:`calibration_metrics` to build them for an ``EvaluationPlugin``::

    EvaluationPlugin(
        accuracy_metrics(experience=True, stream=True),
        calibration_metrics(n_bins=15),
        loggers=[InteractiveLogger()],
    )

Metric names look like ``ECE_Exp/eval_phase/test_stream/Task000/Exp000`` and
``Brier_Stream/eval_phase/test_stream/Task000``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from avalanche.evaluation import GenericPluginMetric, Metric
from torch import Tensor
from torchmetrics.classification import MulticlassCalibrationError

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate

DEFAULT_EPS = 1e-12


def _check_n_bins(n_bins) -> int:
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    return int(n_bins)


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


class _BinnedCalibrationError(Metric[float]):
    """Standalone top-label calibration error over torchmetrics' binning."""

    norm = "l1"

    def __init__(self, *, n_bins: int = 15):
        self.n_bins = _check_n_bins(n_bins)
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


class NegativeLogLikelihood(Metric[float]):
    """Mean negative log-likelihood of the labels under ``softmax(logits)``.

    :param eps: lower clamp of the label's probability (labels outside the
        head have probability 0 and would give an infinite NLL).
    """

    def __init__(self, *, eps: float = DEFAULT_EPS):
        if not 0 < eps < 1:
            raise ValueError(f"eps must be in (0, 1), got {eps}")
        self.eps = float(eps)
        self.reset()

    @torch.no_grad()
    def update(self, logits: Tensor, labels: Tensor) -> None:
        probs, labels = probabilities_and_labels(logits, labels)
        p_y = probs.gather(1, labels[:, None]).squeeze(1)
        self._sum += float(-(p_y.clamp_min(self.eps).log()).sum())
        self._n += labels.numel()

    def result(self) -> float:
        return self._sum / self._n if self._n else math.nan

    def reset(self) -> None:
        self._sum = 0.0
        self._n = 0


class BrierScore(Metric[float]):
    """Multi-class Brier score: mean of ``sum_c (p_c - onehot(y)_c)^2``."""

    def __init__(self):
        self.reset()

    @torch.no_grad()
    def update(self, logits: Tensor, labels: Tensor) -> None:
        probs, labels = probabilities_and_labels(logits, labels)
        onehot = torch.zeros_like(probs).scatter_(1, labels[:, None], 1.0)
        self._sum += float(((probs - onehot) ** 2).sum())
        self._n += labels.numel()

    def result(self) -> float:
        return self._sum / self._n if self._n else math.nan

    def reset(self) -> None:
        self._sum = 0.0
        self._n = 0


class CalibrationPluginMetric(GenericPluginMetric[float, Metric[float]]):
    """Evaluation-time plugin metric over one of the standalone metrics above.

    :param metric: the standalone metric (``update(logits, labels)``).
    :param name: the metric's name prefix (``"ECE"``, ``"NLL"``, ...).
    :param reset_at: Avalanche reset point (``"experience"`` or ``"stream"``).
    :param emit_at: Avalanche emit point (``"experience"`` or ``"stream"``).
    """

    def __init__(
        self, metric: Metric[float], *, name: str, reset_at: str, emit_at: str
    ):
        super().__init__(metric, reset_at=reset_at, emit_at=emit_at, mode="eval")
        self._name = name

    def update(self, strategy: SupervisedTemplate) -> None:
        self._metric.update(strategy.mb_output, strategy.mb_y)

    def __str__(self) -> str:
        level = "Exp" if self._emit_at == "experience" else "Stream"
        return f"{self._name}_{level}"


class ExperienceECE(CalibrationPluginMetric):
    """ECE of each evaluation experience (``ECE_Exp``)."""

    def __init__(self, *, n_bins: int = 15):
        super().__init__(
            ExpectedCalibrationError(n_bins=n_bins),
            name="ECE",
            reset_at="experience",
            emit_at="experience",
        )


class StreamECE(CalibrationPluginMetric):
    """ECE over a whole evaluation stream (``ECE_Stream``)."""

    def __init__(self, *, n_bins: int = 15):
        super().__init__(
            ExpectedCalibrationError(n_bins=n_bins),
            name="ECE",
            reset_at="stream",
            emit_at="stream",
        )


class ExperienceMCE(CalibrationPluginMetric):
    """MCE of each evaluation experience (``MCE_Exp``)."""

    def __init__(self, *, n_bins: int = 15):
        super().__init__(
            MaximumCalibrationError(n_bins=n_bins),
            name="MCE",
            reset_at="experience",
            emit_at="experience",
        )


class StreamMCE(CalibrationPluginMetric):
    """MCE over a whole evaluation stream (``MCE_Stream``)."""

    def __init__(self, *, n_bins: int = 15):
        super().__init__(
            MaximumCalibrationError(n_bins=n_bins),
            name="MCE",
            reset_at="stream",
            emit_at="stream",
        )


class ExperienceNLL(CalibrationPluginMetric):
    """Mean NLL of each evaluation experience (``NLL_Exp``)."""

    def __init__(self, *, eps: float = DEFAULT_EPS):
        super().__init__(
            NegativeLogLikelihood(eps=eps),
            name="NLL",
            reset_at="experience",
            emit_at="experience",
        )


class StreamNLL(CalibrationPluginMetric):
    """Mean NLL over a whole evaluation stream (``NLL_Stream``)."""

    def __init__(self, *, eps: float = DEFAULT_EPS):
        super().__init__(
            NegativeLogLikelihood(eps=eps),
            name="NLL",
            reset_at="stream",
            emit_at="stream",
        )


class ExperienceBrier(CalibrationPluginMetric):
    """Brier score of each evaluation experience (``Brier_Exp``)."""

    def __init__(self):
        super().__init__(
            BrierScore(), name="Brier", reset_at="experience", emit_at="experience"
        )


class StreamBrier(CalibrationPluginMetric):
    """Brier score over a whole evaluation stream (``Brier_Stream``)."""

    def __init__(self):
        super().__init__(
            BrierScore(), name="Brier", reset_at="stream", emit_at="stream"
        )


def calibration_metrics(
    *,
    ece: bool = True,
    mce: bool = True,
    nll: bool = True,
    brier: bool = True,
    n_bins: int = 15,
    experience: bool = True,
    stream: bool = True,
) -> list[CalibrationPluginMetric]:
    """Plugin metrics for an ``EvaluationPlugin``, like ``accuracy_metrics``.

    :param ece: include the expected calibration error.
    :param mce: include the maximum calibration error.
    :param nll: include the mean negative log-likelihood.
    :param brier: include the Brier score.
    :param n_bins: equal-width bins of ECE and MCE (15; the CalibrateMix
        release reports 10).
    :param experience: one value per evaluation experience.
    :param stream: one value per evaluation stream.
    :return: the list of plugin metrics (experience level first).
    """
    n_bins = _check_n_bins(n_bins)
    metrics: list[CalibrationPluginMetric] = []
    levels = []
    if experience:
        levels.append((ExperienceECE, ExperienceMCE, ExperienceNLL, ExperienceBrier))
    if stream:
        levels.append((StreamECE, StreamMCE, StreamNLL, StreamBrier))
    for ece_cls, mce_cls, nll_cls, brier_cls in levels:
        if ece:
            metrics.append(ece_cls(n_bins=n_bins))
        if mce:
            metrics.append(mce_cls(n_bins=n_bins))
        if nll:
            metrics.append(nll_cls())
        if brier:
            metrics.append(brier_cls())
    return metrics


__all__ = [
    "BrierScore",
    "CalibrationPluginMetric",
    "ExpectedCalibrationError",
    "ExperienceBrier",
    "ExperienceECE",
    "ExperienceMCE",
    "ExperienceNLL",
    "MaximumCalibrationError",
    "NegativeLogLikelihood",
    "StreamBrier",
    "StreamECE",
    "StreamMCE",
    "StreamNLL",
    "calibration_metrics",
    "probabilities_and_labels",
]
