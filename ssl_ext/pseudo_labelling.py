"""Pseudo-labelling inside the strategy: statistics that see every rank's
samples, and rows with NaN or inf kept out of them.

A template mixin (see :mod:`ssl_ext.amp_ema` for the pattern): the host holds
``pseudo_labeler`` (a :class:`~ssl_ext.algorithms.PseudoLabeler`), and calls
:meth:`PseudoLabelling._init_pseudo_labelling_state` in its constructor.
Rank, world size and the collectives are Avalanche's ``DistributedHelper``
(single-process runs need no ``torch.distributed`` group).
"""

from __future__ import annotations

import torch
from avalanche.distributed import DistributedHelper
from torch import Tensor

from ssl_ext.algorithms import PseudoLabeler, PseudoLabels
from ssl_ext.amp_ema import warn_once


def gather_rows(x: Tensor) -> tuple[Tensor, list[int]]:
    """``x`` of every rank concatenated along the first dimension, in rank order,
    and the number of rows each rank gave (which may differ)."""
    parts = DistributedHelper.gather_all(x)
    return torch.cat(parts), [int(p.shape[0]) for p in parts]


class PseudoLabelling:
    """Template mixin: :meth:`pseudo_label` and :meth:`gather_from_ranks`."""

    pseudo_labeler: PseudoLabeler | None
    _warned: set[str]

    def _init_pseudo_labelling_state(self) -> None:
        self._nonfinite: Tensor | int = 0
        self._nonfinite_seen = 0

    @property
    def nonfinite_batches(self) -> int:
        """Unlabeled batches with NaN or inf logits (left out of the statistics).

        Counted on the device; reading it waits for the device (the strategy
        reads it once per epoch, to warn)."""
        return int(self._nonfinite)

    def _warn_nonfinite_batches(self) -> None:
        """Warn (once) if the count of non-finite batches grew; once per epoch."""
        count = self.nonfinite_batches
        if count > self._nonfinite_seen:
            warn_once(
                self._warned,
                "logits",
                "NaN or inf in the unlabeled logits: those samples are left out of "
                "the pseudo-labelling statistics and get weight 0 (count in "
                "strategy.nonfinite_batches); check the inputs for NaN/inf, or "
                "lower the learning rate",
            )
        self._nonfinite_seen = count

    def _after_training_epoch(self, **kwargs):
        self._warn_nonfinite_batches()
        super()._after_training_epoch(**kwargs)

    def pseudo_label(
        self, logits_weak: Tensor, index: Tensor | None = None, *, update: bool = True
    ) -> PseudoLabels:
        """Pseudo-labels and weights of unlabeled weak-view logits (detached).

        Under ``torch.distributed`` an updating call gathers every rank's
        logits and indices first, so the statistics (SoftMatch's, FlexMatch's
        thresholds, distribution alignment) see every rank's samples and stay
        identical on all ranks; the rows of this rank are returned.
        """
        logits = logits_weak.detach()
        if not update or DistributedHelper.world_size == 1:
            return self._label_finite(logits, index, update)
        all_logits, sizes = gather_rows(logits.float())
        all_index = None if index is None else gather_rows(index)[0]
        out = self._label_finite(all_logits, all_index, True)
        rank = DistributedHelper.rank
        start = sum(sizes[:rank])
        rows = slice(start, start + sizes[rank])
        return PseudoLabels(out.targets[rows], out.weights[rows], out.probs[rows])

    def gather_from_ranks(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        """Each tensor's rows from every rank, concatenated in rank order (the
        tensors themselves outside ``torch.distributed``).

        An extension point for plugins whose per-sample tables must see every
        rank's samples (e.g. AUM/APM updates from ``mb_output``/``mb_y``/
        ``mb_index``): call it on every rank at the same point of the
        iteration.
        """
        if DistributedHelper.world_size == 1:
            return tensors
        return tuple(gather_rows(t)[0] for t in tensors)

    def _label_finite(
        self, logits: Tensor, index: Tensor | None, update: bool
    ) -> PseudoLabels:
        """Pseudo-label; rows with NaN or inf never reach the statistics.

        Decided on the device: the rows are labelled from their logits with
        NaN and inf replaced by 0, only the finite rows update the
        statistics (``valid=``), the others get weight 0 and the batch is
        counted in :attr:`nonfinite_batches`. A custom rule without
        ``supports_valid`` gets the finite rows selected on the host (one
        read per batch).
        """
        finite = torch.isfinite(logits).all(dim=1)
        self._nonfinite = self._nonfinite + (~finite.all()).long()
        clean = torch.nan_to_num(logits, nan=0.0, posinf=0.0, neginf=0.0)
        if self.pseudo_labeler.supports_valid:
            out = self.pseudo_labeler(clean, index=index, update=update, valid=finite)
        else:
            if bool(finite.all()):
                return self.pseudo_labeler(logits, index=index, update=update)
            if update and bool(finite.any()):
                self.pseudo_labeler(
                    logits[finite],
                    index=None if index is None else index[finite],
                    update=True,
                )
            out = self.pseudo_labeler(clean, index=index, update=False)
        weights = torch.where(finite, out.weights, torch.zeros_like(out.weights))
        return PseudoLabels(out.targets, weights, out.probs)


__all__ = ["PseudoLabelling", "gather_rows"]
