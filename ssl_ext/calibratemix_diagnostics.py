"""Diagnostics of CalibrateMix's easy/hard split, per experience.

Every mixing iteration adds the split it used to running sums kept on the
device (no host synchronisation); :meth:`SplitDiagnostics.means` turns them
into the means of :data:`DIAGNOSTICS` over the experience's mixing
iterations. :func:`publish` hands them to an Avalanche evaluator, hence to
every logger, as ``CalibrateMix_<Name>/train_phase/train_stream``.
"""

from __future__ import annotations

import torch
from avalanche.evaluation.metric_results import MetricValue
from torch import Tensor

from ssl_ext.calibratemix import CalibrateMixBatch

DIAGNOSTICS = (
    "unlabeled_easy_fraction",
    "unlabeled_hard_fraction",
    "unlabeled_undecided_fraction",
    "unlabeled_easy_apm",
    "unlabeled_hard_apm",
    "labeled_easy_aum",
    "labeled_hard_aum",
    "pair_similarity",
    "valid_pair_fraction",
)
"""Names of the per-experience split diagnostics (``CalibrateMixPlugin.history``)."""
# running sums kept per experience, in this order
_SUMS = (
    "iterations",
    "n_unlabeled",
    "n_easy",
    "n_hard",
    "apm_easy",
    "apm_hard",
    "n_labeled",
    "n_lab_easy",
    "aum_easy",
    "aum_hard",
    "n_valid",
    "similarity",
)


class SplitDiagnostics:
    """Running sums of the splits of one experience.

    :attr:`sums` is a float tensor with one entry per name of ``_SUMS`` (or
    ``None`` before the first split); it is what a checkpoint saves.
    """

    def __init__(self):
        self.sums: Tensor | None = None

    def reset(self, device: torch.device | str) -> None:
        """Zero sums for a new experience."""
        self.sums = torch.zeros(len(_SUMS), device=device)

    def record(self, mixed: CalibrateMixBatch) -> None:
        """Add one split to the running sums (no host synchronisation)."""
        sp = mixed.split
        easy, hard = sp.unlabeled_easy.float(), sp.unlabeled_hard.float()
        apm = sp.unlabeled_scores.float()
        lab_easy = sp.labeled_easy.float()
        aum = sp.labeled_scores.float()
        valid = mixed.valid.float()
        row = torch.stack(
            [
                torch.ones((), device=apm.device),
                torch.full((), float(apm.shape[0]), device=apm.device),
                easy.sum(),
                hard.sum(),
                (apm * easy).sum(),
                (apm * hard).sum(),
                torch.full((), float(aum.shape[0]), device=apm.device),
                lab_easy.sum(),
                (aum * lab_easy).sum(),
                (aum * (1 - lab_easy)).sum(),
                valid.sum(),
                (mixed.similarity.float() * valid).sum(),
            ]
        )
        if self.sums is None:
            self.sums = torch.zeros(len(_SUMS), device=row.device)
        self.sums = self.sums.to(row.device) + row

    def means(self) -> dict:
        """Means of :data:`DIAGNOSTICS` over the mixing iterations recorded (NaN
        where a group was always empty), and ``mixing_iterations``."""
        if self.sums is None:
            return dict.fromkeys(DIAGNOSTICS, float("nan")) | {"mixing_iterations": 0}
        s = dict(zip(_SUMS, self.sums.tolist()))

        def ratio(a, b):
            return a / b if b > 0 else float("nan")

        n_lab_hard = s["n_labeled"] - s["n_lab_easy"]
        undecided = s["n_unlabeled"] - s["n_easy"] - s["n_hard"]
        return {
            "unlabeled_easy_fraction": ratio(s["n_easy"], s["n_unlabeled"]),
            "unlabeled_hard_fraction": ratio(s["n_hard"], s["n_unlabeled"]),
            "unlabeled_undecided_fraction": ratio(undecided, s["n_unlabeled"]),
            "unlabeled_easy_apm": ratio(s["apm_easy"], s["n_easy"]),
            "unlabeled_hard_apm": ratio(s["apm_hard"], s["n_hard"]),
            "labeled_easy_aum": ratio(s["aum_easy"], s["n_lab_easy"]),
            "labeled_hard_aum": ratio(s["aum_hard"], n_lab_hard),
            "pair_similarity": ratio(s["similarity"], s["n_valid"]),
            "valid_pair_fraction": ratio(s["n_valid"], s["n_labeled"]),
            "mixing_iterations": int(s["iterations"]),
        }


def publish(evaluator, origin, diagnostics: dict, x_plot: int) -> None:
    """Hand the finite values of ``diagnostics`` to an Avalanche evaluator.

    Call it from ``after_training_exp`` before the evaluator's own, which
    hands the values to every logger.
    """
    for name in DIAGNOSTICS:
        value = diagnostics[name]
        if value == value:  # not NaN
            title = "".join(w.capitalize() for w in name.split("_"))
            evaluator.publish_metric_value(
                MetricValue(
                    origin,
                    f"CalibrateMix_{title}/train_phase/train_stream",
                    value,
                    x_plot,
                )
            )


__all__ = ["DIAGNOSTICS", "SplitDiagnostics", "publish"]
