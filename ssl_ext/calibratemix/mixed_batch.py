"""CalibrateMix steps 3 and 4: the mixed batch of an iteration and its loss.

:func:`make_mixed_batch` splits both batches (:mod:`.split`), pairs them
(:mod:`.pairing`) and mixes each pair with one ``lam ~ Beta(alpha, alpha)``
per mix group (the mixing ops of :mod:`avalanche_mixplugins.mixing`);
:func:`calibratemix_loss` is ``L_mix1 + L_mix2`` of the mixed logits against
the mixed one-hot label and pseudo-label. Pure tensor code.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from avalanche_mixplugins.mixing import check_alpha, mix_inputs, one_hot, sample_lambda
from ssl_ext.calibratemix.pairing import (
    DEFAULT_K_FRACTION,
    dissimilar_partners,
    num_candidates,
)
from ssl_ext.calibratemix.split import Split, median_split, median_split_masks

MIX_LOSSES = ("bce", "ce")
"""Losses of the mixed samples: sigmoid BCE (the release) or softmax CE."""
DEFAULT_ALPHA = 0.4
"""``Beta(alpha, alpha)`` of the two mixing coefficients (the release)."""


class CalibrateMixBatch(NamedTuple):
    """The mixed samples of one iteration (both mix groups, mix 1 first).

    :param x: mixed inputs ``(B, ...)``.
    :param labeled: position in the labeled batch of each mixed sample's
        labeled side, ``(B,)`` (labeled-easy first, then labeled-hard).
    :param partner: position in the unlabeled batch of its unlabeled side.
    :param lam: ``(B,)`` weight of the labeled side (one value per group).
    :param group: ``(B,)`` 0 for mix 1 (labeled-easy with unlabeled-hard),
        1 for mix 2 (labeled-hard with unlabeled-easy).
    :param valid: bool ``(B,)``: the sample found a partner of the right kind
        (False only when that kind is empty, e.g. every unlabeled sample is
        undecided); invalid samples get no weight in :func:`calibratemix_loss`.
    :param similarity: ``(B,)`` cosine similarity of each pair's inputs.
    :param split: the :class:`Split` the pairs were drawn from.
    """

    x: Tensor
    labeled: Tensor
    partner: Tensor
    lam: Tensor
    group: Tensor
    valid: Tensor
    similarity: Tensor
    split: Split


def make_mixed_batch(
    x_labeled: Tensor,
    x_unlabeled: Tensor,
    labeled_scores: Tensor,
    unlabeled_scores: Tensor,
    *,
    unlabeled_decided: Tensor | None = None,
    alpha: float = DEFAULT_ALPHA,
    k_fraction: float = DEFAULT_K_FRACTION,
    generator: torch.Generator | None = None,
) -> CalibrateMixBatch:
    """Split, pair and mix one iteration's batches (steps 1-3 of the module doc).

    :param x_labeled: ``(B, ...)`` labeled (weak-view) inputs, ``B >= 2``.
    :param x_unlabeled: ``(U, ...)`` unlabeled weak views, ``U >= 2``.
    :param labeled_scores: ``(B,)`` AUM of the labeled samples.
    :param unlabeled_scores: ``(U,)`` APM of the unlabeled samples at their
        pseudo-labels.
    :param unlabeled_decided: bool ``(U,)``: the sample has an APM history;
        the median split is taken among these only and the others are never
        paired (``None``: every sample).
    :param alpha: ``Beta(alpha, alpha)`` of the two mixing coefficients (0.4).
    :param k_fraction: ``k`` as a fraction of ``U`` (0.05), see
        :func:`num_candidates`.
    :param generator: optional generator (lambdas and partner draws), on
        the inputs' device to keep the draws there.
    """
    alpha = check_alpha(alpha)
    b, u = x_labeled.shape[0], x_unlabeled.shape[0]
    if labeled_scores.shape != (b,) or unlabeled_scores.shape != (u,):
        raise ValueError(
            f"scores must have shapes ({b},) and ({u},), got "
            f"{tuple(labeled_scores.shape)} and {tuple(unlabeled_scores.shape)}"
        )
    k = num_candidates(u, k_fraction)
    device = x_labeled.device
    lab_easy, lab_hard = median_split(labeled_scores)
    ulb_easy, ulb_hard = median_split_masks(
        unlabeled_scores.to(device),
        None if unlabeled_decided is None else unlabeled_decided.to(device),
    )
    labeled = torch.cat([lab_easy, lab_hard]).to(device)
    lab_is_easy = torch.zeros(b, dtype=torch.bool, device=device)
    lab_is_easy[lab_easy.to(device)] = True
    pairs = dissimilar_partners(
        x_labeled[labeled],
        x_unlabeled,
        lab_is_easy[labeled],
        ulb_easy,
        unlabeled_hard=ulb_hard,
        k=k,
        generator=generator,
    )
    partner = pairs.partner
    group = torch.cat(
        [
            torch.zeros(lab_easy.shape[0], dtype=torch.long, device=device),
            torch.ones(lab_hard.shape[0], dtype=torch.long, device=device),
        ]
    )
    lam = sample_lambda(alpha, 2, device=device, generator=generator)[group]
    # mix_inputs mixes rows of one tensor: put each labeled side and its
    # unlabeled partner in one (2B, ...) tensor and keep the first B rows
    pool = torch.cat([x_labeled[labeled], x_unlabeled[partner]])
    rows = torch.arange(b, device=device)
    mixed = mix_inputs(pool, torch.cat([rows + b, rows]), torch.cat([lam, lam]))[:b]
    split = Split(labeled_scores, lab_is_easy, unlabeled_scores, ulb_easy, ulb_hard)
    return CalibrateMixBatch(
        mixed, labeled, partner, lam, group, pairs.valid, pairs.similarity, split
    )


def calibratemix_loss(
    logits: Tensor,
    labels: Tensor,
    pseudo_labels: Tensor,
    lam: Tensor,
    group: Tensor,
    *,
    loss: str = "bce",
    valid: Tensor | None = None,
    check_labels: bool = True,
) -> Tensor:
    """``L_mix1 + L_mix2`` of the mixed samples (step 4 of the module doc).

    Per sample ``lam L(z, onehot(y)) + (1 - lam) L(z, onehot(y_hat))``: both
    losses are linear in the target, so this is ``L`` against the mixed
    target ``lam onehot(y) + (1 - lam) onehot(y_hat)``; averaged within each
    group and summed over the groups.

    :param logits: ``(B, C)`` logits of the mixed inputs.
    :param labels: ``(B,)`` labels of their labeled sides.
    :param pseudo_labels: ``(B,)`` hard pseudo-labels of their unlabeled sides.
    :param lam: ``(B,)`` weights of the labeled sides.
    :param group: ``(B,)`` mix group of each sample (0 or 1).
    :param loss: ``"bce"`` (sigmoid binary cross-entropy averaged over
        classes, as released) or ``"ce"`` (softmax cross-entropy).
    :param valid: bool ``(B,)``: samples to count (``CalibrateMixBatch.valid``);
        ``None`` counts all. Group means are over the valid samples.
    :param check_labels: validate the range of ``labels`` (host syncs); the
        plugin passes ``False`` because the strategy checks once per experience.
    """
    if loss not in MIX_LOSSES:
        raise ValueError(f"loss must be one of {MIX_LOSSES}, got {loss!r}")
    if logits.dim() != 2:
        raise ValueError(f"expected logits of shape (B, C), got {tuple(logits.shape)}")
    n, c = logits.shape
    for name, t in (("labels", labels), ("pseudo_labels", pseudo_labels), ("lam", lam)):
        if t.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {tuple(t.shape)}")
    z = logits.float()
    lam_b = lam.to(z).view(-1, 1)
    # pseudo-labels are arg-maxes of the logits, always in range
    target = lam_b * one_hot(labels, c, check=check_labels) + (1.0 - lam_b) * one_hot(
        pseudo_labels, c, check=False
    )
    if loss == "bce":
        per_sample = F.binary_cross_entropy_with_logits(z, target, reduction="none")
        per_sample = per_sample.mean(dim=1)
    else:
        per_sample = -(target * F.log_softmax(z, dim=1)).sum(dim=1)
    w = torch.ones_like(per_sample) if valid is None else valid.to(per_sample)
    sizes = torch.zeros(2, dtype=z.dtype, device=z.device).index_add_(0, group, w)
    return (w * per_sample / sizes[group].clamp_min(1.0)).sum()


__all__ = [
    "DEFAULT_ALPHA",
    "MIX_LOSSES",
    "CalibrateMixBatch",
    "calibratemix_loss",
    "make_mixed_batch",
]
