"""CalibrateMix step 1: the easy / hard split of a batch at its median score.

:func:`median_split` splits the labeled batch by its AUM,
:func:`median_split_masks` the unlabeled batch by its APM among the samples
that have an APM history (the others are *undecided*); :class:`Split` is
the split of one iteration with the scores it read. Pure tensor code.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from avalanche_mixplugins.validation import check_scores


class Split(NamedTuple):
    """The easy / hard split of one iteration and the scores it read.

    :param labeled_scores: ``(B,)`` AUM of the labeled samples.
    :param labeled_easy: bool ``(B,)`` (the rest is hard).
    :param unlabeled_scores: ``(U,)`` APM of the unlabeled samples at their
        pseudo-labels.
    :param unlabeled_easy: bool ``(U,)``.
    :param unlabeled_hard: bool ``(U,)``; samples neither easy nor hard are
        *undecided* (no APM history) and are never paired.
    """

    labeled_scores: Tensor
    labeled_easy: Tensor
    unlabeled_scores: Tensor
    unlabeled_easy: Tensor
    unlabeled_hard: Tensor

    @property
    def unlabeled_decided(self) -> Tensor:
        return self.unlabeled_easy | self.unlabeled_hard


def median_split(scores: Tensor) -> tuple[Tensor, Tensor]:
    """Split a batch by the median of its scores.

    The ``N // 2`` samples with the lowest scores are *hard*, the others
    *easy* (ties are broken by position: a stable sort).

    :param scores: ``(N,)`` float scores (AUM or APM), ``N >= 2``.
    :return: ``(easy, hard)`` long index tensors of sizes ``N - N // 2`` and
        ``N // 2``, each in ascending score order.
    """
    check_scores(scores)
    order = torch.sort(scores.detach(), stable=True).indices
    half = scores.shape[0] // 2
    return order[half:], order[:half]


def median_split_masks(
    scores: Tensor, decided: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Median split among the *decided* samples only, as boolean masks.

    Of the ``n`` decided samples, the ``n // 2`` with the lowest scores are
    hard and the others easy (stable sort: ties by position); undecided
    samples (e.g. no APM history yet) are neither. Computed on the scores'
    device without a host synchronisation.

    :param scores: ``(N,)`` float scores, ``N >= 2``.
    :param decided: bool ``(N,)``; ``None`` means every sample.
    :return: ``(easy, hard)`` bool ``(N,)`` masks.
    """
    check_scores(scores)
    n = scores.shape[0]
    if decided is None:
        decided = torch.ones(n, dtype=torch.bool, device=scores.device)
    elif decided.shape != (n,) or decided.dtype != torch.bool:
        raise ValueError(
            f"decided must be a bool mask of shape ({n},), got "
            f"{tuple(decided.shape)} {decided.dtype}"
        )
    key = torch.where(decided, scores.detach().float(), torch.inf)
    order = torch.sort(key, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n, device=order.device)
    half = decided.sum() // 2
    hard = decided & (rank < half)
    return decided & ~hard, hard


__all__ = ["Split", "median_split", "median_split_masks"]
