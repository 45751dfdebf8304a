"""Mixing operations on batches of tensors.

Pure tensor maths shared by every plugin of the package (and by
:mod:`ssl_ext`): mixing-coefficient sampling, input interpolation (Mixup),
box pasting (CutMix), soft targets and the mixed loss. Nothing here imports
Avalanche. ``check_alpha`` is re-exported from
:mod:`avalanche_mixplugins.validation`.

* Mixup: Zhang, Cisse, Dauphin, Lopez-Paz. "mixup: Beyond Empirical Risk
  Minimization". ICLR 2018. https://arxiv.org/abs/1710.09412
* CutMix: Yun, Han, Oh, Chun, Choe, Yoo. "CutMix: Regularization Strategy to
  Train Strong Classifiers with Localizable Features". ICCV 2019.
  https://arxiv.org/abs/1905.04899

Shapes: inputs ``x`` are ``(N, ...)`` (images ``(N, C, H, W)``), labels ``y``
are integer ``(N,)``, a pairing is an index tensor ``partner`` of shape
``(N,)`` (sample ``i`` is mixed with sample ``partner[i]``) and ``lam`` is a
``(N,)`` tensor of weights of the first sample.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from avalanche_mixplugins.validation import check_alpha, check_mix_shapes, check_one_of

MIX_MODES = ("mixup", "cutmix")
#: the operations a per-sample operation index refers to, in order
OPERATIONS = MIX_MODES


def sample_lambda(
    alpha: float,
    n: int,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    per_sample: bool = True,
) -> Tensor:
    """Draw mixing coefficients from ``Beta(alpha, alpha)``.

    The draw happens on ``device`` (default: the generator's device, else the
    CPU), with ``generator`` when given: a generator on the training device
    keeps the draw there, with no host-device copy. For one seed, CPU and
    CUDA generators give different numbers.

    :param alpha: concentration of the symmetric Beta distribution (> 0).
    :param n: number of coefficients to return.
    :param device: device of the returned tensor.
    :param generator: optional ``torch.Generator`` for reproducibility; a
        generator on another device than ``device`` draws there and the
        result is copied (kept for callers with a CPU generator).
    :param per_sample: one coefficient per sample (default) or one shared by
        the whole batch, repeated ``n`` times.
    :return: float tensor of shape ``(n,)`` with values in ``[0, 1]``.
    """
    alpha = check_alpha(alpha)
    k = n if per_sample else 1
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    device = torch.device(device)
    where = generator.device if generator is not None else device
    # Beta(a, a) as a ratio of Gamma draws, so a seeded generator can be used
    # (float64 where the device has it: small alpha underflows in float32)
    dtype = torch.float32 if where.type == "mps" else torch.float64
    conc = torch.full((2, k), alpha, dtype=dtype, device=where)
    gam = torch._standard_gamma(conc, generator=generator)
    lam = (
        gam[0]
        / (gam[0] + gam[1]).clamp_min(1e-300 if dtype == torch.float64 else 1e-38)
    ).float()
    lam = torch.nan_to_num(lam, nan=0.5).clamp_(0.0, 1.0)
    if not per_sample:
        lam = lam.expand(n).clone()
    return lam.to(device)


def _broadcast(lam: Tensor, x: Tensor) -> Tensor:
    return lam.to(dtype=x.dtype, device=x.device).view(-1, *([1] * (x.dim() - 1)))


def mix_inputs(x: Tensor, partner: Tensor, lam: Tensor) -> Tensor:
    """Mixup: ``lam[i] * x[i] + (1 - lam[i]) * x[partner[i]]``.

    :param x: float batch ``(N, ...)``.
    :param partner: long ``(N,)`` index of each sample's partner in ``x``.
    :param lam: ``(N,)`` weight of the first sample.
    :return: mixed batch, same shape and dtype as ``x``.
    """
    check_mix_shapes(x, partner, lam)
    if not torch.is_floating_point(x):
        raise ValueError(
            f"mixup needs floating-point inputs, got {x.dtype}; convert images with "
            "torchvision.transforms.v2.ToDtype(torch.float32, scale=True) first"
        )
    lam_b = _broadcast(lam, x)
    return lam_b * x + (1.0 - lam_b) * x[partner]


def cutmix_boxes(
    lam: Tensor,
    height: int,
    width: int,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Random boxes whose area fraction is ``1 - lam`` (before clipping).

    The box side ratios follow CutMix: ``sqrt(1 - lam)`` of each side, centred
    uniformly in the image and clipped at its borders. Everything is computed
    on ``lam``'s device, the centres drawn there with ``generator``.

    :param lam: ``(N,)`` requested weights of the first sample.
    :param height: image height.
    :param width: image width.
    :param generator: optional ``torch.Generator``, on ``lam``'s device (a
        generator on another device draws there and the centres are copied).
    :return: ``(boxes, lam_adjusted)``: long ``(N, 4)`` boxes as
        ``(y0, y1, x0, x1)`` (end exclusive) on ``lam``'s device, and the
        weights corrected to ``1 - pasted area / image area``.
    """
    n = lam.shape[0]
    device = lam.device
    where = generator.device if generator is not None else device
    cut = torch.sqrt((1.0 - lam.detach().float()).clamp(0.0, 1.0))
    ch = torch.round(cut * height).long()
    cw = torch.round(cut * width).long()
    cy = torch.randint(0, height, (n,), generator=generator, device=where)
    cx = torch.randint(0, width, (n,), generator=generator, device=where)
    cy, cx = cy.to(device), cx.to(device)
    y0 = cy - ch // 2
    x0 = cx - cw // 2
    y1 = (y0 + ch).clamp(0, height)
    x1 = (x0 + cw).clamp(0, width)
    y0 = y0.clamp(0, height)
    x0 = x0.clamp(0, width)
    boxes = torch.stack([y0, y1, x0, x1], dim=1)
    area = ((y1 - y0) * (x1 - x0)).float()
    lam_adj = 1.0 - area / float(height * width)
    return boxes, lam_adj.to(dtype=lam.dtype)


def box_masks(boxes: Tensor, height: int, width: int) -> Tensor:
    """Boolean ``(N, 1, H, W)`` masks, true inside each box (batched, no loop)."""
    rows = torch.arange(height, device=boxes.device).view(1, height, 1)
    cols = torch.arange(width, device=boxes.device).view(1, 1, width)
    y0, y1, x0, x1 = (boxes[:, k].view(-1, 1, 1) for k in range(4))
    inside = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
    return inside.unsqueeze(1)


def cutmix_inputs(
    x: Tensor,
    partner: Tensor,
    lam: Tensor,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """CutMix: paste a box of ``x[partner[i]]`` into ``x[i]``.

    :param x: image batch ``(N, C, H, W)`` (any dtype).
    :param partner: long ``(N,)`` partner indices.
    :param lam: ``(N,)`` requested weights of the first sample.
    :param generator: optional ``torch.Generator`` for the box centres (on
        ``lam``'s device to keep the draw there).
    :return: ``(mixed, lam_adjusted)`` where ``lam_adjusted = 1 - box area /
        image area`` is the weight to give the first sample's label.
    """
    check_mix_shapes(x, partner, lam)
    if x.dim() != 4:
        raise ValueError(
            f"CutMix needs image batches of shape (N, C, H, W), got {tuple(x.shape)}"
        )
    height, width = x.shape[-2:]
    boxes, lam_adj = cutmix_boxes(lam, height, width, generator=generator)
    inside = box_masks(boxes, height, width)
    return torch.where(inside, x[partner], x), lam_adj


def one_hot(
    y: Tensor,
    num_classes: int,
    *,
    dtype: torch.dtype = torch.float32,
    check: bool = True,
) -> Tensor:
    """One-hot encode integer labels, with a clear error for labels out of range.

    :param check: validate the label range (two host syncs on an accelerator);
        callers that validated the labels already (the plugins do it once per
        experience) pass ``False`` to keep the training step sync-free.
    """
    if check and y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}) to match the model's "
            f"{num_classes} outputs, got range [{int(y.min())}, {int(y.max())}]"
        )
    return F.one_hot(y.long(), num_classes).to(dtype)


def mix_targets(
    y: Tensor, partner: Tensor, lam: Tensor, num_classes: int, *, check: bool = True
) -> Tensor:
    """Soft targets ``lam * e_{y_i} + (1 - lam) * e_{y_partner(i)}``; rows sum to 1.

    :param check: validate the label range, see :func:`one_hot`.
    """
    t = one_hot(y, num_classes, check=check)
    lam_b = lam.to(t).view(-1, 1)
    return lam_b * t + (1.0 - lam_b) * t[partner]


def one_hot_and_mix_targets(
    y: Tensor, partner: Tensor, lam: Tensor, num_classes: int
) -> tuple[Tensor, Tensor]:
    """One-hot targets of the samples and the candidates' soft targets.

    The same values as :func:`one_hot` and :func:`mix_targets` (``lam * e_y +
    (1 - lam) * e_partner``), from one scatter and without a range check
    (which reads the labels' extremes): for a training step whose labels were
    validated before (the plugins check them once per experience).
    """
    t = torch.zeros(y.shape[0], num_classes, device=y.device)
    t.scatter_(1, y.long().view(-1, 1), 1.0)
    lam_b = lam.to(t).view(-1, 1)
    return t, lam_b * t + (1.0 - lam_b) * t[partner]


def mixed_cross_entropy(
    logits: Tensor,
    y: Tensor,
    partner: Tensor,
    lam: Tensor,
    *,
    reduction: str = "mean",
) -> Tensor:
    """``lam * CE(logits, y_i) + (1 - lam) * CE(logits, y_partner(i))``.

    Equal to the cross-entropy against :func:`mix_targets`, without building
    the soft targets.

    :param reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per sample).
    """
    logp = F.log_softmax(logits.float(), dim=1)
    nll_a = -logp.gather(1, y.view(-1, 1)).squeeze(1)
    nll_b = -logp.gather(1, y[partner].view(-1, 1)).squeeze(1)
    lam = lam.to(logp)
    # a term of weight 0 contributes 0 even when its label's logit is masked
    # out (-inf), e.g. an empty CutMix box under an asymmetric loss
    zero = torch.zeros_like(nll_a)
    per_sample = torch.where(lam > 0, lam * nll_a, zero) + torch.where(
        lam < 1, (1.0 - lam) * nll_b, zero
    )
    if reduction == "none":
        return per_sample
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "mean":
        return per_sample.mean()
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


ASYMMETRIC_MODES = ("current", "both", "all")


def current_only_mask(
    y: Tensor,
    is_buffer: Tensor,
    partner: Tensor,
    num_classes: int,
    lam: Tensor | None = None,
    *,
    previous_only: bool = False,
    cross: bool = False,
) -> Tensor:
    """Bool ``(N, C)`` mask of the logits an asymmetric cross-entropy leaves out.

    A candidate mixed from two current samples is scored over the classes of
    the current samples of the batch only (as ER-ACE scores current samples),
    so it never pushes previous-class logits down; a candidate with a buffer
    source keeps every logit. With ``previous_only``, the mirror rule also
    applies: a candidate mixed from two buffer samples leaves out the classes
    of the current samples, so it never pushes the new classes' logits down.
    With ``cross``, a candidate mixed from a current and a buffer sample is
    scored over the current classes and its buffer source's class only, so
    it never pushes the logits of the other previous classes down. With
    ``lam`` given, a partner that contributes nothing (``lam = 1``, an empty
    CutMix box) does not count as a source.
    """
    # classes of the current samples, without boolean indexing (no host sync)
    counts = torch.zeros(num_classes, device=y.device)
    present = counts.scatter_add(0, y.long(), (~is_buffer).float()) > 0
    partner_is_buffer = is_buffer[partner]
    partner_is_current = ~partner_is_buffer
    if lam is not None:  # lam = 1 (e.g. an empty CutMix box): nothing was mixed in
        mixed_in = lam.to(y.device) < 1.0
        partner_is_buffer = partner_is_buffer & mixed_in
        partner_is_current = partner_is_current & mixed_in
    current_pair = ~is_buffer & ~partner_is_buffer
    mask = current_pair.view(-1, 1) & ~present.view(1, -1)
    if previous_only:
        buffer_pair = is_buffer & ~partner_is_current
        mask = mask | (buffer_pair.view(-1, 1) & present.view(1, -1))
    if cross:
        mixed = (~is_buffer & partner_is_buffer) | (is_buffer & partner_is_current)
        source = torch.where(is_buffer, y, y[partner]).long()
        own = torch.arange(num_classes, device=y.device).view(1, -1) == source.view(
            -1, 1
        )
        mask = mask | (mixed.view(-1, 1) & ~present.view(1, -1) & ~own)
    return mask


def apply_mix(
    mode: str,
    x: Tensor,
    partner: Tensor,
    lam: Tensor,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Mix a batch with ``mode`` in :data:`MIX_MODES`; return inputs and the label weights."""
    check_one_of("mix mode", mode, MIX_MODES)
    if mode == "mixup":
        return mix_inputs(x, partner, lam), lam
    return cutmix_inputs(x, partner, lam, generator=generator)


def mix_by_operation(
    x: Tensor,
    partner: Tensor,
    lam: Tensor,
    operation: Tensor,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Mix each pair with its own operation: Mixup or CutMix, chosen per sample.

    Sample ``i`` is interpolated with ``x[partner[i]]`` where
    ``operation[i] == 0`` (``OPERATIONS[0]``, Mixup) and gets a box of it
    pasted where ``operation[i] == 1`` (CutMix). Both results are computed for
    the whole batch and selected with :func:`torch.where`, so the choice costs
    no host synchronisation and no data-dependent shape.

    :param x: image batch ``(N, C, H, W)``.
    :param partner: long ``(N,)`` partner indices.
    :param lam: ``(N,)`` requested weights of the first sample.
    :param operation: integer ``(N,)`` index into :data:`OPERATIONS`.
    :param generator: generator of the CutMix box centres.
    :return: ``(mixed, lam_y)``, ``lam_y`` being ``lam`` for Mixup samples and
        the area-corrected weight for CutMix samples.
    """
    if operation.shape != partner.shape:
        raise ValueError(
            f"operation must have the partner's shape {tuple(partner.shape)}, "
            f"got {tuple(operation.shape)}"
        )
    if x.dim() != 4:
        raise ValueError(
            "choosing the operation per sample includes CutMix, which needs image "
            f"batches of shape (N, C, H, W), got {tuple(x.shape)}; use mix='mixup'"
        )
    blended = mix_inputs(x, partner, lam)
    pasted, lam_cut = cutmix_inputs(x, partner, lam, generator=generator)
    use_cut = operation.to(x.device) == OPERATIONS.index("cutmix")
    x_mix = torch.where(use_cut.view(-1, 1, 1, 1), pasted, blended)
    lam_y = torch.where(use_cut.to(lam.device), lam_cut, lam)
    return x_mix, lam_y


__all__ = [
    "ASYMMETRIC_MODES",
    "MIX_MODES",
    "OPERATIONS",
    "apply_mix",
    "box_masks",
    "check_alpha",
    "current_only_mask",
    "cutmix_boxes",
    "cutmix_inputs",
    "mix_by_operation",
    "mix_inputs",
    "mix_targets",
    "mixed_cross_entropy",
    "one_hot",
    "one_hot_and_mix_targets",
    "sample_lambda",
]
