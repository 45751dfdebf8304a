"""FlexMatch: class-wise thresholds from curriculum pseudo-labelling.

Zhang, Wang, Hou, Wu, Wang, Okumura, Shinozaki. "FlexMatch: Boosting
Semi-Supervised Learning with Curriculum Pseudo Labeling". NeurIPS 2021.
https://arxiv.org/abs/2110.08263

Defaults follow the USB benchmark: threshold 0.95, convex mapping
``x / (2 - x)`` and threshold warm-up. The table of selected labels is
updated on the device without host synchronisation; the number of classes
may grow between calls.
"""

from __future__ import annotations

import torch
from torch import Tensor

from avalanche_mixplugins.validation import check_probability
from ssl_ext.algorithms.base import PseudoLabeler


class FlexMatch(PseudoLabeler):
    """FlexMatch: class-wise thresholds from curriculum pseudo-labelling.

    A table ``selected[n]`` holds, for every unlabeled sample ``n``, the last
    class it was pseudo-labelled with at confidence ``>= threshold`` (``-1``
    if never). With ``sigma_c`` the number of samples selected for class ``c``,
    the learning effect is ``beta_c = sigma_c / max(max_c sigma_c, N_unused)``
    with warm-up (``N_unused`` = number of ``-1`` entries) or
    ``sigma_c / max_c sigma_c`` without. A sample is kept when
    ``max_c p_ic >= threshold * M(beta_{y_i})`` with the convex mapping
    ``M(x) = x / (2 - x)`` (Zhang et al., NeurIPS 2021, Eq. 6-11). As in USB,
    the mask uses the thresholds *before* this batch's update, and ``beta``
    is only refreshed while some sample is still unused
    (``max sigma < N``).

    :param num_unlabeled: size of the unlabeled dataset (length of the table);
        indices passed at call time must lie in ``[0, num_unlabeled)``.
    :param threshold: base confidence threshold (0.95).
    :param warmup: threshold warm-up (count unused samples in the normaliser).
    """

    name = "flexmatch"
    needs_num_unlabeled = True
    supports_valid = True

    def __init__(
        self, *, num_unlabeled: int, threshold: float = 0.95, warmup: bool = True
    ):
        if int(num_unlabeled) != num_unlabeled or num_unlabeled < 1:
            raise ValueError(
                f"num_unlabeled must be a positive integer, got {num_unlabeled!r}"
            )
        self.num_unlabeled = int(num_unlabeled)
        self.threshold = check_probability("threshold", threshold)
        self.warmup = bool(warmup)
        self.selected_label = torch.full((self.num_unlabeled,), -1, dtype=torch.long)
        self.classwise_acc = torch.zeros(0)

    def _grow(self, num_classes: int, device: torch.device) -> None:
        if self.selected_label.device != device:
            self.selected_label = self.selected_label.to(device)
        self.classwise_acc = self.classwise_acc.to(device)
        old = self.classwise_acc.shape[0]
        if num_classes > old:
            pad = torch.zeros(num_classes - old, device=device)
            self.classwise_acc = torch.cat([self.classwise_acc, pad])
        elif num_classes < old:
            raise ValueError(
                f"got {num_classes} classes, fewer than the {old} already tracked"
            )

    def class_thresholds(self) -> Tensor:
        """Current per-class thresholds ``threshold * M(beta_c)``, ``(C,)``."""
        acc = self.classwise_acc
        return self.threshold * (acc / (2.0 - acc))

    def _weights(self, probs, max_probs, targets, *, index, update, valid=None):
        if index is None:
            raise ValueError(
                "FlexMatch needs the dataset indices of the batch (index=)"
            )
        num_classes = probs.shape[1]
        self._grow(num_classes, max_probs.device)
        mask = (max_probs >= self.class_thresholds()[targets]).float()
        if update:
            index = index.to(max_probs.device).long()
            select = max_probs >= self.threshold
            if valid is not None:
                select = select & valid
            # masked scatter without a host sync: unselected rows rewrite
            # their current value
            current = self.selected_label[index]
            self.selected_label[index] = torch.where(select, targets, current)
            counts = torch.bincount(self.selected_label + 1, minlength=num_classes + 1)
            counts = counts.float()
            per_class = counts[1 : num_classes + 1]
            denom = counts.max() if self.warmup else per_class.max()
            acc = per_class / denom.clamp_min(1.0)
            refresh = counts.max() < self.num_unlabeled
            self.classwise_acc = torch.where(refresh, acc, self.classwise_acc)
        return mask

    def state_dict(self) -> dict:
        return {
            "selected_label": self.selected_label,
            "classwise_acc": self.classwise_acc,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["selected_label"].shape != self.selected_label.shape:
            raise ValueError(
                "selected_label has shape "
                f"{tuple(state['selected_label'].shape)}, expected "
                f"{tuple(self.selected_label.shape)}"
            )
        super().load_state_dict(state)


__all__ = ["FlexMatch"]
