"""Calibration metrics (ECE, MCE, NLL, Brier) as Avalanche evaluation plugin metrics.

The maths and the running state are the standalone metrics of
:mod:`avalanche_mixplugins.calibration` (torchmetrics' binning for ECE and
MCE), re-exported here. This module only adapts them to Avalanche, as
``accuracy_metrics`` does for accuracy: :class:`CalibrationPluginMetric`
reads ``strategy.mb_output`` and ``strategy.mb_y`` at evaluation time, and
one plugin metric per quantity and level is defined by two tables,
:data:`CALIBRATION_QUANTITIES` (name -> standalone metric) and
:data:`LEVELS` (reset and emit granularity -> name suffix).
:func:`calibration_metrics` builds them for an ``EvaluationPlugin``::

    EvaluationPlugin(
        accuracy_metrics(experience=True, stream=True),
        calibration_metrics(n_bins=15),
        loggers=[InteractiveLogger()],
    )

Metric names look like ``ECE_Exp/eval_phase/test_stream/Task000/Exp000`` and
``Brier_Stream/eval_phase/test_stream/Task000``.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, ClassVar

from avalanche.evaluation import GenericPluginMetric, Metric

from avalanche_mixplugins.calibration import (
    DEFAULT_EPS,
    BrierScore,
    ExpectedCalibrationError,
    MaximumCalibrationError,
    NegativeLogLikelihood,
    probabilities_and_labels,
)
from avalanche_mixplugins.validation import check_n_bins

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate

CALIBRATION_QUANTITIES: dict[str, tuple[type, str]] = {
    "ECE": (ExpectedCalibrationError, "ECE"),
    "MCE": (MaximumCalibrationError, "MCE"),
    "NLL": (NegativeLogLikelihood, "Mean NLL"),
    "Brier": (BrierScore, "Brier score"),
}
"""Metric name prefix -> (standalone metric, what the docstrings call it).
Keyword arguments of a plugin metric go to its standalone metric (``n_bins``
for ECE and MCE, ``eps`` for NLL)."""

LEVELS: dict[str, tuple[str, str, str]] = {
    "experience": ("Experience", "Exp", "of each evaluation experience"),
    "stream": ("Stream", "Stream", "over a whole evaluation stream"),
}
"""Avalanche reset/emit point -> (class name prefix, metric name suffix, docstring)."""


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
        self._name = f"{name}_{'Exp' if emit_at == 'experience' else 'Stream'}"

    def update(self, strategy: SupervisedTemplate) -> None:
        # ``_metric`` is where GenericPluginMetric keeps the standalone metric
        # (Avalanche's own plugin metrics update it the same way)
        self._metric.update(strategy.mb_output, strategy.mb_y)

    def __str__(self) -> str:
        return self._name


class LevelCalibrationMetric(CalibrationPluginMetric):
    """A calibration quantity reset and emitted at one level, both set by the subclass.

    The subclasses (``ExperienceECE``, ``StreamBrier``, ...) are made by
    :func:`_level_metric` from :data:`CALIBRATION_QUANTITIES` and
    :data:`LEVELS`; their keyword arguments are those of the standalone
    metric.
    """

    quantity: ClassVar[str]
    """A key of :data:`CALIBRATION_QUANTITIES`."""
    level: ClassVar[str]
    """A key of :data:`LEVELS`."""

    def __init__(self, **options):
        metric_class = CALIBRATION_QUANTITIES[self.quantity][0]
        super().__init__(
            metric_class(**options),
            name=self.quantity,
            reset_at=self.level,
            emit_at=self.level,
        )


def _level_metric(quantity: str, level: str) -> type[LevelCalibrationMetric]:
    """The plugin metric class of ``quantity`` at ``level``, e.g. ``StreamECE``."""
    metric_class, what = CALIBRATION_QUANTITIES[quantity]
    prefix, suffix, where = LEVELS[level]
    name = f"{prefix}{quantity}"
    cls = type(
        name,
        (LevelCalibrationMetric,),
        {
            "quantity": quantity,
            "level": level,
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": f"{what} {where} (``{quantity}_{suffix}``); arguments as "
            f":class:`~avalanche_mixplugins.calibration.{metric_class.__name__}`.",
        },
    )
    # the signature users see is the standalone metric's (n_bins=, eps=, none)
    cls.__signature__ = inspect.signature(metric_class)
    return cls


ExperienceECE = _level_metric("ECE", "experience")
StreamECE = _level_metric("ECE", "stream")
ExperienceMCE = _level_metric("MCE", "experience")
StreamMCE = _level_metric("MCE", "stream")
ExperienceNLL = _level_metric("NLL", "experience")
StreamNLL = _level_metric("NLL", "stream")
ExperienceBrier = _level_metric("Brier", "experience")
StreamBrier = _level_metric("Brier", "stream")

PLUGIN_METRICS: dict[tuple[str, str], type[LevelCalibrationMetric]] = {
    (cls.quantity, cls.level): cls
    for cls in (
        ExperienceECE,
        StreamECE,
        ExperienceMCE,
        StreamMCE,
        ExperienceNLL,
        StreamNLL,
        ExperienceBrier,
        StreamBrier,
    )
}
"""``(quantity, level)`` -> plugin metric class."""


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
    n_bins = check_n_bins(n_bins)
    wanted = {"ECE": ece, "MCE": mce, "NLL": nll, "Brier": brier}
    options = {"ECE": {"n_bins": n_bins}, "MCE": {"n_bins": n_bins}}
    levels = [lv for lv, on in (("experience", experience), ("stream", stream)) if on]
    return [
        PLUGIN_METRICS[quantity, level](**options.get(quantity, {}))
        for level in levels
        for quantity in CALIBRATION_QUANTITIES
        if wanted[quantity]
    ]


__all__ = [
    "CALIBRATION_QUANTITIES",
    "DEFAULT_EPS",
    "LEVELS",
    "PLUGIN_METRICS",
    "BrierScore",
    "CalibrationPluginMetric",
    "ExpectedCalibrationError",
    "ExperienceBrier",
    "ExperienceECE",
    "ExperienceMCE",
    "ExperienceNLL",
    "LevelCalibrationMetric",
    "MaximumCalibrationError",
    "NegativeLogLikelihood",
    "StreamBrier",
    "StreamECE",
    "StreamMCE",
    "StreamNLL",
    "calibration_metrics",
    "probabilities_and_labels",
]
