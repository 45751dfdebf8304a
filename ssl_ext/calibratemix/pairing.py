"""CalibrateMix step 2: dissimilar partners of the other kind.

Every labeled-easy sample gets an unlabeled-hard partner and every
labeled-hard sample an unlabeled-easy one, drawn uniformly among the ``k``
candidates (:func:`num_candidates`) whose flattened input is least
cosine-similar to it (:func:`cosine_similarity_matrix`,
:func:`least_similar`): one ``B x U`` similarity matrix for the whole batch,
cross-group entries masked, no Python loop over samples
(:func:`dissimilar_partners`). Pure tensor code.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from avalanche_mixplugins.validation import check_k_fraction

DEFAULT_K_FRACTION = 0.05
"""``k`` as a fraction of the unlabeled batch (the release: 15 of 224)."""


def num_candidates(num_unlabeled: int, k_fraction: float) -> int:
    """``k``: ``round(k_fraction * U)``, at least 1 and at most the smaller half.

    The release uses 15 of 224 unlabeled samples (about 5%).
    """
    k_fraction = check_k_fraction(k_fraction)
    if num_unlabeled < 2:
        raise ValueError(f"need at least 2 unlabeled samples, got {num_unlabeled}")
    return int(min(max(1, round(k_fraction * num_unlabeled)), num_unlabeled // 2))


def cosine_similarity_matrix(a: Tensor, b: Tensor) -> Tensor:
    """``(N, M)`` cosine similarities of the flattened rows of ``a`` and ``b``."""
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(
            f"inputs must have the same sample shape, got {tuple(a.shape[1:])} and "
            f"{tuple(b.shape[1:])}"
        )
    fa = F.normalize(a.detach().flatten(1).float(), dim=1)
    fb = F.normalize(b.detach().flatten(1).float(), dim=1)
    return fa @ fb.T


def least_similar(similarity: Tensor, allowed: Tensor, k: int) -> Tensor:
    """The ``k`` columns of least similarity for every row, ``(N, k)``.

    Allowed columns come first (ascending similarity); a row with fewer than
    ``k`` allowed columns is filled with disallowed ones after them.

    :param similarity: ``(N, M)`` similarities.
    :param allowed: bool ``(N, M)``.
    :param k: candidates per row.
    """
    if similarity.shape != allowed.shape:
        raise ValueError(
            f"allowed has shape {tuple(allowed.shape)}, expected {tuple(similarity.shape)}"
        )
    if not 1 <= k <= similarity.shape[1]:
        raise ValueError(f"k must be in [1, {similarity.shape[1]}], got {k}")
    masked = torch.where(allowed, similarity, torch.inf)
    return masked.topk(k, dim=1, largest=False).indices


class Partners(NamedTuple):
    """Output of :func:`dissimilar_partners`.

    :param partner: long ``(B,)`` position of each labeled sample's partner
        in the unlabeled batch.
    :param candidates: long ``(B, k)`` the least similar candidates it was
        drawn from (allowed ones first).
    :param valid: bool ``(B,)``: at least one candidate of the right kind.
    :param similarity: ``(B,)`` cosine similarity of each pair.
    """

    partner: Tensor
    candidates: Tensor
    valid: Tensor
    similarity: Tensor


def dissimilar_partners(
    x_labeled: Tensor,
    x_unlabeled: Tensor,
    labeled_easy: Tensor,
    unlabeled_easy: Tensor,
    *,
    k: int,
    unlabeled_hard: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Partners:
    """Pair every labeled sample with a dissimilar unlabeled one of the other kind.

    A labeled-easy sample gets an unlabeled-hard partner, a labeled-hard one
    an unlabeled-easy partner, drawn uniformly among the ``k`` least
    cosine-similar candidates of that kind (one ``(B, U)`` similarity matrix,
    the rest masked out). When the kind holds fewer than ``k`` samples the
    draw is among all of them; when it is empty the pair is not ``valid``.

    :param x_labeled: ``(B, ...)`` labeled inputs.
    :param x_unlabeled: ``(U, ...)`` unlabeled (weak-view) inputs.
    :param labeled_easy: bool ``(B,)``: the labeled sample is easy (else hard).
    :param unlabeled_easy: bool ``(U,)``: the unlabeled sample is easy.
    :param k: candidates per labeled sample.
    :param unlabeled_hard: bool ``(U,)``: the unlabeled sample is hard;
        ``None`` means every sample that is not easy. Samples neither easy nor
        hard (undecided) are never drawn.
    :param generator: optional generator of the uniform draw (on the inputs'
        device to keep it there).
    """
    b, u = x_labeled.shape[0], x_unlabeled.shape[0]
    if unlabeled_hard is None:
        unlabeled_hard = ~unlabeled_easy
    if (
        labeled_easy.shape != (b,)
        or unlabeled_easy.shape != (u,)
        or unlabeled_hard.shape != (u,)
    ):
        raise ValueError(
            "labeled_easy and unlabeled_easy/unlabeled_hard must be bool masks of "
            f"shapes ({b},) and ({u},), got {tuple(labeled_easy.shape)}, "
            f"{tuple(unlabeled_easy.shape)} and {tuple(unlabeled_hard.shape)}"
        )
    sim = cosine_similarity_matrix(x_labeled, x_unlabeled)
    lab_easy = labeled_easy.to(sim.device)[:, None]
    allowed = (lab_easy & unlabeled_hard.to(sim.device)[None, :]) | (
        ~lab_easy & unlabeled_easy.to(sim.device)[None, :]
    )
    candidates = least_similar(sim, allowed, k)
    n_allowed = allowed.sum(dim=1)
    k_eff = n_allowed.clamp(min=1, max=k)
    where = generator.device if generator is not None else sim.device
    u01 = torch.rand(b, generator=generator, device=where).to(sim.device)
    pick = (u01 * k_eff).long().clamp_max(k_eff - 1)
    partner = candidates.gather(1, pick[:, None]).squeeze(1)
    similarity = sim.gather(1, partner[:, None]).squeeze(1)
    return Partners(partner, candidates, n_allowed > 0, similarity)


__all__ = [
    "DEFAULT_K_FRACTION",
    "Partners",
    "cosine_similarity_matrix",
    "dissimilar_partners",
    "least_similar",
    "num_candidates",
]
