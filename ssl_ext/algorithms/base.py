"""The common part of the pseudo-labelling rules (pure tensor maths).

A rule maps the (detached) logits of the weakly augmented unlabeled views
to *targets* (hard pseudo-labels, the arg-max of the raw logits) and
per-sample *weights* (:class:`PseudoLabels`); the unsupervised loss is the
weighted cross-entropy of the strongly augmented views against those
targets (:func:`consistency_loss`). :class:`PseudoLabeler` is the base
class: a rule implements ``_weights`` (and ``_probs`` to reshape the
probabilities first) and keeps its running statistics as tensors, with
``state_dict()`` / ``load_state_dict()``. Nothing here imports Avalanche.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from avalanche_mixplugins.validation import check_batch_logits


class PseudoLabels(NamedTuple):
    """Output of a pseudo-labelling rule for one unlabeled batch.

    :param targets: hard pseudo-labels, integer ``(N,)``.
    :param weights: per-sample loss weights in ``[0, 1]``, float ``(N,)``
        (a 0/1 mask for FixMatch and FlexMatch).
    :param probs: the class probabilities the weights were computed from,
        ``(N, C)`` (after distribution alignment for SoftMatch; the targets are
        always the arg-max of the raw logits).
    """

    targets: Tensor
    weights: Tensor
    probs: Tensor


def consistency_loss(logits: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
    """Weighted cross-entropy of ``logits`` against pseudo-labels.

    ``mean_i(weights_i * CE(logits_i, targets_i))``, averaged over the whole
    batch (masked samples count in the denominator), as in FixMatch and USB.

    :param logits: ``(N, C)`` logits of the strong views (with gradient).
    :param targets: integer ``(N,)`` hard labels or float ``(N, C)`` soft labels.
    :param weights: ``(N,)`` per-sample weights.
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    if targets.dim() == 2:
        ce = -(targets * F.log_softmax(logits.float(), dim=-1)).sum(-1)
    else:
        ce = F.cross_entropy(logits.float(), targets, reduction="none")
    return (ce * weights.to(ce.dtype)).mean()


class PseudoLabeler:
    """Base class: a pseudo-labelling rule with optional running statistics.

    Subclasses implement :meth:`_weights`; calling the object on the detached
    weak-view logits returns :class:`PseudoLabels` (hard targets). ``update``
    controls whether running statistics move (set it to ``False`` to label a
    batch a second time without counting it twice).
    """

    name = "base"
    needs_num_unlabeled = False
    """True if the rule keeps a table over the unlabeled dataset
    (``num_unlabeled=`` in :func:`~ssl_ext.algorithms.make_pseudo_labeler`)."""
    supports_valid = False
    """True if ``_probs`` and ``_weights`` take ``valid=`` (a bool ``(N,)`` of
    the rows allowed to update the statistics, or ``None`` for all): the
    strategy then keeps non-finite rows out of the statistics on the device.
    A rule without it is called on the finite rows, which the host selects
    (one read of the device per batch)."""

    def __call__(
        self,
        logits_weak: Tensor,
        *,
        index: Tensor | None = None,
        update: bool = True,
        valid: Tensor | None = None,
    ) -> PseudoLabels:
        """Pseudo-label a batch.

        :param logits_weak: ``(N, C)`` logits of the weak views (detached here).
        :param index: ``(N,)`` dataset indices of the samples (FlexMatch needs
            them; the others ignore them).
        :param update: update the running statistics with this batch.
        :param valid: bool ``(N,)``: only these rows update the statistics
            (all rows are labelled); ``None`` means every row. Needs
            :attr:`supports_valid`.
        """
        logits = check_batch_logits(logits_weak)
        if index is not None and index.shape != logits.shape[:1]:
            raise ValueError(
                f"index has shape {tuple(index.shape)}, expected ({logits.shape[0]},)"
            )
        extra = {}
        if valid is not None:
            if not self.supports_valid:
                raise ValueError(f"{type(self).__name__} does not take valid=")
            if valid.shape != logits.shape[:1] or valid.dtype != torch.bool:
                raise ValueError(
                    f"valid must be a bool tensor of shape ({logits.shape[0]},), "
                    f"got {valid.dtype} {tuple(valid.shape)}"
                )
            extra["valid"] = valid
        probs = self._probs(logits, update=update, **extra)
        # the hard pseudo-label is the arg-max of the raw logits; SoftMatch's
        # distribution alignment only shapes the weights (USB, the release)
        targets = logits.argmax(dim=-1)
        max_probs = probs.amax(dim=-1)
        weights = self._weights(
            probs, max_probs, targets, index=index, update=update, **extra
        )
        return PseudoLabels(targets, weights.to(torch.float32), probs)

    def _probs(
        self, logits: Tensor, *, update: bool, valid: Tensor | None = None
    ) -> Tensor:
        return logits.softmax(dim=-1)

    def _weights(
        self,
        probs: Tensor,
        max_probs: Tensor,
        targets: Tensor,
        *,
        index: Tensor | None,
        update: bool,
        valid: Tensor | None = None,
    ) -> Tensor:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Running statistics (tensors are returned as is, not copied)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore statistics saved by :meth:`state_dict`."""
        unknown = set(state) - set(self.state_dict())
        if unknown:
            raise ValueError(f"unexpected keys in state dict: {sorted(unknown)}")
        for key, value in state.items():
            setattr(
                self, key, value if not isinstance(value, Tensor) else value.clone()
            )

    def to(self, device: torch.device | str) -> PseudoLabeler:
        """Move the statistics to ``device`` (in place); returns ``self``."""
        state = self.state_dict()
        self.load_state_dict(
            {k: v.to(device) if isinstance(v, Tensor) else v for k, v in state.items()}
        )
        return self

    def __repr__(self) -> str:
        params = ", ".join(
            f"{k}={v}" for k, v in vars(self).items() if isinstance(v, int | float)
        )
        return f"{type(self).__name__}({params})"


__all__ = ["PseudoLabeler", "PseudoLabels", "consistency_loss"]
