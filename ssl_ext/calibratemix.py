"""CalibrateMix maths: easy/hard split, dissimilar pairing, mixed loss (pure).

Rahman, Mohan, Sosea, Caragea. "CalibrateMix: Guided-Mixup Calibration of
Image Semi-Supervised Models". arXiv:2511.12964 (AAAI 2026, "On the
Calibration of Image Semi-Supervised Learning Models").
https://arxiv.org/abs/2511.12964

Per training iteration, with a labeled batch of ``B`` samples scored by their
AUM (:class:`~ssl_ext.dynamics.AUMTracker`) and an unlabeled batch of ``U``
samples scored by their APM at the pseudo-label
(:class:`~ssl_ext.dynamics.APMTracker`):

1. :func:`median_split`: in each batch, the lower half of the scores is
   *hard*, the upper half *easy*;
2. :func:`dissimilar_partners`: every labeled-easy sample is paired with an
   unlabeled-hard one and every labeled-hard sample with an unlabeled-easy
   one, drawn uniformly among the ``k`` candidates whose flattened input is
   least cosine-similar to it; one ``B x U`` similarity matrix for the whole
   batch (cross-group entries masked), no Python loop over samples; each
   labeled sample is used once, unlabeled partners may repeat;
3. :func:`make_mixed_batch`: ``x~ = lam x_labeled + (1 - lam) x_unlabeled_weak``
   with one ``lam ~ Beta(alpha, alpha)`` per mix group (``alpha = 0.4``);
4. :func:`calibratemix_loss`: ``lam L(z~, onehot(y)) + (1 - lam)
   L(z~, onehot(y_hat))`` with ``L`` the sigmoid binary cross-entropy
   averaged over classes (the release) or the softmax cross-entropy, averaged
   within each mix group and summed over the two groups
   (``L_mix1 + L_mix2``).

The Avalanche glue (warm-up, the trackers, the ``fast`` and ``faithful``
modes) is :class:`ssl_ext.calibratemix_plugin.CalibrateMixPlugin`. Nothing
here imports Avalanche. Shapes: inputs ``(N, ...)``, scores ``(N,)``; every
index tensor is long on the inputs' device.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from avalanche_mixplugins.mixing import check_alpha, mix_inputs, one_hot, sample_lambda
from avalanche_mixplugins.validation import check_k_fraction, check_scores

MIX_LOSSES = ("bce", "ce")
DEFAULT_ALPHA = 0.4
DEFAULT_K_FRACTION = 0.05


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


def num_candidates(num_unlabeled: int, k_fraction: float) -> int:
    """``k``: ``round(k_fraction * U)``, at least 1 and at most the smaller half.

    The release uses 15 of 224 unlabeled samples (about 5%).
    """
    k_fraction = check_k_fraction(k_fraction)
    if num_unlabeled < 2:
        raise ValueError(f"need at least 2 unlabeled samples, got {num_unlabeled}")
    return int(min(max(1, round(k_fraction * num_unlabeled)), num_unlabeled // 2))


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
    :param generator: optional CPU generator of the uniform draw.
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
    u01 = torch.rand(b, generator=generator).to(sim.device)
    pick = (u01 * k_eff).long().clamp_max(k_eff - 1)
    partner = candidates.gather(1, pick[:, None]).squeeze(1)
    similarity = sim.gather(1, partner[:, None]).squeeze(1)
    return Partners(partner, candidates, n_allowed > 0, similarity)


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
    :param generator: optional CPU generator (lambdas and partner draws).
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
    lam = sample_lambda(alpha, 2, generator=generator).to(device)[group]
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


def __getattr__(name: str):
    if name == "MixedBatch":  # the name before CalibrateMixBatch
        warnings.warn(
            "ssl_ext.calibratemix.MixedBatch is deprecated: use "
            "ssl_ext.calibratemix.CalibrateMixBatch",
            DeprecationWarning,
            stacklevel=2,
        )
        return CalibrateMixBatch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_K_FRACTION",
    "MIX_LOSSES",
    "CalibrateMixBatch",
    "Partners",
    "Split",
    "calibratemix_loss",
    "check_k_fraction",
    "cosine_similarity_matrix",
    "dissimilar_partners",
    "least_similar",
    "make_mixed_batch",
    "median_split",
    "median_split_masks",
    "num_candidates",
]
