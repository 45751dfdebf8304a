"""FixMatch: a hard pseudo-label kept when its confidence reaches a threshold.

Sohn, Berthelot, Li, Zhang, Carlini, Cubuk, Kurakin, Zhang, Raffel.
"FixMatch: Simplifying Semi-Supervised Learning with Consistency and
Confidence". NeurIPS 2020. https://arxiv.org/abs/2001.07685
"""

from __future__ import annotations

from avalanche_mixplugins.validation import check_probability
from ssl_ext.algorithms.base import PseudoLabeler


class FixMatch(PseudoLabeler):
    """FixMatch: hard pseudo-label kept when its confidence reaches a threshold.

    ``weight_i = 1[max_c p_ic >= threshold]`` with ``p = softmax(z_weak)``
    (Sohn et al., NeurIPS 2020).

    :param threshold: confidence threshold (0.95 in the paper and USB).
    """

    name = "fixmatch"
    supports_valid = True

    def __init__(self, *, threshold: float = 0.95):
        self.threshold = check_probability("threshold", threshold)

    def _weights(self, probs, max_probs, targets, *, index, update, valid=None):
        return (max_probs >= self.threshold).float()


__all__ = ["FixMatch"]
