"""Pseudo-labelling rules of FixMatch, SoftMatch and FlexMatch (pure tensor maths).

Each algorithm maps the (detached) logits of the weakly augmented unlabeled
views to *targets* (hard pseudo-labels) and per-sample *weights* (a binary
confidence mask for FixMatch and FlexMatch, a soft truncated-Gaussian weight
for SoftMatch). The unsupervised loss is then the weighted cross-entropy of
the strongly augmented views against those targets
(:func:`consistency_loss`). Nothing here imports Avalanche.

* :mod:`.base`: :class:`PseudoLabels`, :class:`PseudoLabeler` (the base
  class), :func:`consistency_loss`;
* :mod:`.fixmatch`: FixMatch (Sohn et al., NeurIPS 2020,
  https://arxiv.org/abs/2001.07685);
* :mod:`.softmatch`: SoftMatch and its distribution alignment (Chen et al.,
  ICLR 2023, https://arxiv.org/abs/2301.10921);
* :mod:`.flexmatch`: FlexMatch (Zhang et al., NeurIPS 2021,
  https://arxiv.org/abs/2110.08263);
* :mod:`.registry`: the rules by name, :func:`make_pseudo_labeler`.

Defaults follow the USB benchmark (Wang et al., NeurIPS 2022 Datasets and
Benchmarks): FixMatch threshold 0.95; SoftMatch with uniform distribution
alignment, EMA momentum 0.999 and ``n_sigma = 2``; FlexMatch threshold 0.95,
convex mapping ``x / (2 - x)`` and threshold warm-up.

All statistics are tensors updated in place without host synchronisation; the
number of classes may grow between calls (class-incremental models whose
output layer grows): statistics are extended to the new width on the fly.
Every algorithm exposes ``state_dict()`` / ``load_state_dict()``.
"""

from ssl_ext.algorithms.base import PseudoLabeler, PseudoLabels, consistency_loss
from ssl_ext.algorithms.fixmatch import FixMatch
from ssl_ext.algorithms.flexmatch import FlexMatch
from ssl_ext.algorithms.registry import (
    ALGORITHMS,
    PSEUDO_LABELERS,
    make_pseudo_labeler,
)
from ssl_ext.algorithms.softmatch import DistributionAlignment, SoftMatch

__all__ = [
    "ALGORITHMS",
    "PSEUDO_LABELERS",
    "DistributionAlignment",
    "FixMatch",
    "FlexMatch",
    "PseudoLabeler",
    "PseudoLabels",
    "SoftMatch",
    "consistency_loss",
    "make_pseudo_labeler",
]
