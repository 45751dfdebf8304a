"""The evaluated model's top-label predictions, recorded during Avalanche's eval.

:class:`TopLabelPredictions` keeps, for every evaluated sample, the
confidence of the top label and whether it is right, read from the
strategy's own eval outputs (``mb_output``): they are the predictions of the
model the strategy evaluates (an EMA teacher, for instance), with no second
pass. A result file stores them so that reliability diagrams and
calibration errors at any binning can be drawn later;
:meth:`TopLabelPredictions.ece` gives the top-label ECE at a binning of one's
choice (torchmetrics' binning).

:func:`~avalanche_mixplugins.experiments.runs.top_label_predictions` is the
post-hoc alternative: a separate pass of a model over a stream.
"""

from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin
from torchmetrics.functional.classification import binary_calibration_error


class TopLabelPredictions(SupervisedPlugin):
    """Top-label confidence and correctness of the evaluated model.

    The lists are emptied at the start of every ``eval`` call, so after one
    they hold that call's samples in the order they were evaluated.

    :param digits: the confidences are rounded to this many digits (they go
        into result files).
    """

    def __init__(self, *, digits: int = 6):
        super().__init__()
        self.digits = digits
        self.confidence: list[float] = []
        self.correct: list[int] = []

    def before_eval(self, strategy, **kwargs):
        self.confidence, self.correct = [], []

    def after_eval_forward(self, strategy, **kwargs):
        p = torch.softmax(strategy.mb_output.detach().float(), dim=1).cpu()
        conf, pred = p.max(dim=1)
        self.confidence += [round(float(v), self.digits) for v in conf]
        self.correct += (pred == strategy.mb_y.cpu()).int().tolist()

    def ece(self, n_bins: int = 10) -> float:
        """Top-label expected calibration error with ``n_bins`` equal-width bins."""
        conf = torch.tensor(self.confidence)
        correct = torch.tensor(self.correct)
        return float(binary_calibration_error(conf, correct, n_bins=n_bins))

    def as_dict(self) -> dict[str, list]:
        """``{"confidence": [...], "correct": [...]}``, as a result file stores them."""
        return {"confidence": self.confidence, "correct": self.correct}


__all__ = ["TopLabelPredictions"]
