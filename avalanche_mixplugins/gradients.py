"""Inner products between per-sample loss gradients and a buffer gradient.

GradMix (Kim, Hwang, Whang, arXiv:2505.08528) approximates the effect of a
training step on the previous-task (buffer) loss by the inner product of the
gradient of the mixed samples with the mean gradient of the buffer samples:
after ``theta' = theta - eta * g_mix``, ``L_buf(theta') ~= L_buf(theta) -
eta * <grad L_buf, g_mix>``. A positive inner product lowers the buffer loss.

Two gradient spaces:

``"last"`` (closed form, default)
    The last linear layer ``z = W h + b``. For softmax cross-entropy against a
    soft target ``t`` (rows summing to 1), a sample's gradient is
    ``dW = (p - t) h^T`` and ``db = p - t`` with ``p = softmax(z)``. With the
    buffer's mean gradient ``(G, g_b)`` the inner product of sample ``i`` is
    ``(p_i - t_i)^T G h_i + (p_i - t_i) . g_b``: one matrix product for the
    whole batch, no per-sample autograd. ``h`` is captured with a forward hook
    on the head (:class:`HeadCapture`), so no extra forward is needed.

``"full"`` (exact)
    Per-sample gradients of all trainable parameters with ``torch.func``
    (``vmap`` over ``grad``), for small models and to validate ``"last"``.
    Batch-norm layers use their running statistics there (per-sample
    gradients have no batch statistics).

Nothing here imports Avalanche.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avalanche_mixplugins._constants import arange, scalar
from avalanche_mixplugins.head import HeadCapture, find_linear_head
from avalanche_mixplugins.validation import check_head_features

GRAD_SPACES = ("last", "full")
REFERENCES = ("buffer", "buffer+current", "buffer|current", "balanced")
"""What a candidate's gradient is compared with (see :func:`combine_references`)."""
MAX_FULL_GRADIENT_BYTES = 4 * 2**30
"""Largest ``N x P`` per-sample gradient matrix :func:`per_sample_gradients`
builds (4 GiB); ResNet-18 at ``N = 256`` would need about 11 GiB per matrix."""


def _f(t: Tensor) -> Tensor:
    """At least float32 (half and bfloat16 are promoted; float64 is kept)."""
    return t if t.dtype == torch.float64 else t.float()


def softmax_residual(logits: Tensor, targets: Tensor) -> Tensor:
    """``softmax(logits) - targets``: the gradient of soft cross-entropy in the logits."""
    if logits.requires_grad:  # features captured by a hook come detached already
        logits = logits.detach()
    z = _f(logits)
    # in place on the fresh softmax: the values of ``softmax(z) - targets``
    return torch.softmax(z, dim=1).sub_(targets.to(z.dtype))


def last_layer_gradient_sum(
    h: Tensor,
    logits: Tensor,
    targets: Tensor,
    weights: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Weighted sum of per-sample last-layer gradients.

    :param h: ``(N, D)`` head inputs.
    :param logits: ``(N, C)`` logits.
    :param targets: ``(N, C)`` soft targets (one-hot for labelled samples).
    :param weights: optional ``(N,)`` sample weights (e.g. a buffer mask).
    :return: ``(G_sum (C, D), gb_sum (C,), count ())``; the mean gradient is
        ``G_sum / count``. Sums are returned so that they can be all-reduced.
    """
    check_head_features(h, logits, targets)
    return _residual_gradient_sum(softmax_residual(logits, targets), h, weights)


def _residual_gradient_sum(
    r: Tensor, h: Tensor, weights: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`last_layer_gradient_sum` from the residuals ``r = softmax(z) - t``."""
    if weights is None:
        weights = torch.ones(r.shape[0], device=r.device)
    return _weighted_gradient_sum(r, h, weights.to(r.dtype))


def _weighted_gradient_sum(
    r: Tensor, h: Tensor, w: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`_residual_gradient_sum` with the weights ``w`` already in ``r``'s dtype."""
    rw = r * w.view(-1, 1)
    return rw.t() @ _f(h).to(r.dtype), rw.sum(dim=0), w.sum()


def last_layer_inner_products(
    h: Tensor,
    logits: Tensor,
    targets: Tensor,
    grad_w: Tensor,
    grad_b: Tensor | None = None,
) -> Tensor:
    """Inner product of each sample's last-layer gradient with ``(grad_w, grad_b)``.

    :param h: ``(N, D)`` head inputs.
    :param logits: ``(N, C)`` logits.
    :param targets: ``(N, C)`` soft targets.
    :param grad_w: ``(C, D)`` reference gradient of the weight.
    :param grad_b: ``(C,)`` reference gradient of the bias, or ``None`` for a
        head without bias.
    :return: ``(N,)`` inner products.
    """
    check_head_features(h, logits, targets)
    return _residual_inner_products(
        softmax_residual(logits, targets), h, grad_w, grad_b
    )


def _residual_inner_products(
    r: Tensor, h: Tensor, grad_w: Tensor, grad_b: Tensor | None
) -> Tensor:
    """:func:`last_layer_inner_products` from the residuals ``r = softmax(z) - t``."""
    ip = ((r @ grad_w.to(r.dtype)) * _f(h).to(r.dtype)).sum(dim=1)
    if grad_b is not None:
        ip = ip + r @ grad_b.to(r.dtype)
    return ip


def last_layer_paired_inner_products(
    h_a: Tensor,
    logits_a: Tensor,
    targets_a: Tensor,
    h_b: Tensor,
    logits_b: Tensor,
    targets_b: Tensor,
    *,
    bias: bool = True,
) -> Tensor:
    """Row-wise inner products of two batches' last-layer gradients.

    Row ``i`` is ``<g(a_i), g(b_i)> = (r_a . r_b) (h_a . h_b + [bias])`` with
    ``r = softmax(z) - t``: the gradient of sample ``a_i`` dotted with that of
    sample ``b_i``. GradMix uses it to remove a candidate's own source samples
    from the buffer gradient it is scored against (leave-one-out).

    :param bias: count the head's bias (``False`` for a head without one).
    :return: ``(N,)`` inner products.
    """
    check_head_features(h_a, logits_a, targets_a)
    check_head_features(h_b, logits_b, targets_b)
    r_a = softmax_residual(logits_a, targets_a)
    r_b = softmax_residual(logits_b, targets_b)
    return _residual_paired_inner_products(r_a, h_a, r_b, h_b, bias=bias)


def _residual_paired_inner_products(
    r_a: Tensor, h_a: Tensor, r_b: Tensor, h_b: Tensor, *, bias: bool
) -> Tensor:
    """:func:`last_layer_paired_inner_products` from the residuals of both batches."""
    r_b = r_b.to(r_a.dtype)
    hh = (_f(h_a).to(r_a.dtype) * _f(h_b).to(r_a.dtype)).sum(dim=1)
    if bias:
        hh = hh + 1.0
    return (r_a * r_b).sum(dim=1) * hh


def leave_one_out_mean(
    total: Tensor,
    count: Tensor,
    own_a: Tensor,
    own_b: Tensor,
    is_buffer: Tensor,
    partner: Tensor,
) -> Tensor:
    """Inner products with a buffer mean that leaves out each candidate's sources.

    Candidate ``i`` mixes pool samples ``i`` and ``partner[i]``. Given its
    inner product ``total[i]`` with the **sum** of the buffer samples'
    gradients (``count`` samples) and its inner products ``own_a[i]``,
    ``own_b[i]`` with the gradients of its two sources, return its inner
    product with the mean gradient of the other buffer samples:
    ``(total - [a in buffer] own_a - [b in buffer, b != a] own_b) / (count - m)``
    with ``m`` the number of its sources in the buffer. ``NaN`` where no other
    buffer sample is left.

    :return: ``(N,)`` inner products.
    """
    return _leave_one_out(
        total, count, own_a, own_b, is_buffer.to(total.dtype), partner
    )


def _leave_one_out(
    total: Tensor,
    count: Tensor,
    own_a: Tensor,
    own_b: Tensor,
    buf: Tensor,
    partner: Tensor,
) -> Tensor:
    """:func:`leave_one_out_mean` with the buffer mask ``buf`` as 0/1 floats
    in ``total``'s dtype."""
    dtype = total.dtype
    in_a = buf
    # buf[partner] times [partner != own index]: 0 where a sample is its own partner
    in_b = buf[partner].masked_fill_(
        partner == arange(partner.shape[0], partner.device), 0.0
    )
    rest = count.to(dtype) - in_a - in_b
    inner = (total - in_a * own_a.to(dtype) - in_b * own_b.to(dtype)) / (
        rest.clamp_min(1.0)
    )
    return torch.where(rest > 0, inner, scalar(float("nan"), dtype, inner.device))


def check_reference(reference: str) -> str:
    """Return ``reference`` if it is one of :data:`REFERENCES`, else raise ``ValueError``."""
    if reference not in REFERENCES:
        raise ValueError(
            f"reference must be one of {', '.join(map(repr, REFERENCES))} "
            f"(the buffer's gradient alone, the buffer's plus the current "
            f"classes', agreement with either, or the two directions with "
            f"equal weight), got {reference!r}"
        )
    return reference


def reference_sets(is_buffer: Tensor, reference: str) -> list[Tensor]:
    """The pool masks whose mean gradients a criterion needs.

    ``[is_buffer]`` for ``"buffer"``; ``[is_buffer, ~is_buffer]`` (the
    buffer samples, then the current-class samples) otherwise.
    """
    check_reference(reference)
    if reference == "buffer":
        return [is_buffer]
    return [is_buffer, ~is_buffer]


def combine_references(
    scores: list[Tensor], reference: str, norms: list[Tensor] | None = None
) -> Tensor:
    """One score per candidate from its scores against each reference set.

    :param scores: ``(N,)`` scores against the sets of :func:`reference_sets`
        (the buffer's first, then the current classes'), ``NaN`` where a set
        had no sample left for the candidate.
    :param reference: ``"buffer"``: the buffer's score alone (GradMix's
        criterion); ``"buffer+current"``: the sum of the two, the first-order
        decrease of the buffer's mean loss **plus** the current classes' mean
        loss after a step on the candidate; ``"buffer|current"``: the larger
        of the two, positive when the candidate agrees with **either**
        reference; ``"balanced"``: the sum of the two scores each divided by
        its reference's norm (``norms``), so the two directions weigh alike
        whatever the size of their gradients. Without a buffer score the
        candidate has no evidence (``NaN``); without a current score (no
        other current sample) the buffer's score is used alone (divided by
        its norm under ``"balanced"``).
    :param norms: ``"balanced"`` only: ``()`` norms of the two sets' mean
        gradients (over the whole set; the leave-one-out means differ from
        it by one or two samples).
    :return: ``(N,)`` scores.
    """
    check_reference(reference)
    buffer = scores[0]
    if reference == "buffer":
        return buffer
    current = scores[1]
    if reference == "balanced":
        if norms is None:
            raise ValueError("reference='balanced' needs the references' norms")
        tiny = torch.finfo(buffer.dtype).tiny
        buffer = buffer / norms[0].to(buffer.dtype).clamp_min(tiny)
        current = current / norms[1].to(buffer.dtype).clamp_min(tiny)
    missing = torch.isnan(current)
    if reference == "buffer|current":
        both = torch.maximum(buffer, current)  # NaN where the buffer's is NaN
    else:
        both = buffer + current
    return torch.where(missing, buffer, both)


def _mean_norm(parts: tuple[Tensor, ...], count: Tensor) -> Tensor:
    """Norm of a set's mean gradient from the parts of its summed gradient."""
    sq = sum((_f(t) ** 2).sum() for t in parts)
    return sq.sqrt() / count.clamp_min(1.0).to(sq.dtype)


def last_layer_buffer_alignment(
    h: Tensor,
    logits: Tensor,
    targets: Tensor,
    is_buffer: Tensor,
    h_mix: Tensor,
    logits_mix: Tensor,
    targets_mix: Tensor,
    partner: Tensor,
    *,
    bias: bool = True,
    leave_one_out: bool = True,
    reference: str = "buffer",
    reduce: Callable[..., None] | None = None,
) -> Tensor:
    """GradMix's per-candidate score in the last linear layer, in closed form.

    The inner product of each mixed sample's last-layer gradient with the
    mean last-layer gradient of the pool's buffer samples. With
    ``leave_one_out`` each candidate's own sources (pool sample ``i`` and
    ``partner[i]``) are taken out of that mean (:func:`leave_one_out_mean`).
    With ``reference`` other than ``"buffer"`` the same score is also taken
    against the mean gradient of the pool's current-class samples (full
    softmax, leaving the candidate's own sources out likewise) and the two
    are combined by :func:`combine_references`.

    :param h, logits, targets: head inputs ``(N, D)``, logits ``(N, C)`` and
        soft targets of the pool.
    :param is_buffer: bool ``(N,)``, the pool's buffer samples.
    :param h_mix, logits_mix, targets_mix: the same for the ``N`` candidates
        (candidate ``i`` mixes pool samples ``i`` and ``partner[i]``).
    :param bias: the head has a bias.
    :param reference: one of :data:`REFERENCES`.
    :param reduce: called in place on the reference sets' gradient sums and
        counts before they are used (an all-reduce under ``torch.distributed``).
    :return: ``(N,)`` scores, ``NaN`` where no other buffer sample is left.
    """
    masks = reference_sets(is_buffer, reference)
    check_head_features(h, logits, targets)
    check_head_features(h_mix, logits_mix, targets_mix)
    # each batch's residuals once (softmax is row-wise: r[partner] is the
    # residual of the partners' rows)
    r = softmax_residual(logits, targets)
    r_mix = softmax_residual(logits_mix, targets_mix)
    # each mask as 0/1 floats once: the gradient sums and the leave-one-out
    # counts read the same values
    weights = [m.to(r.dtype) for m in masks]
    sums = [_weighted_gradient_sum(r, h, w) for w in weights]
    if reduce is not None:
        reduce(*(t for s in sums for t in s))
    totals = [
        _residual_inner_products(r_mix, h_mix, g_w, g_b if bias else None)
        for g_w, g_b, _ in sums
    ]
    norms = None
    if reference == "balanced":
        norms = [_mean_norm((g_w, g_b) if bias else (g_w,), n) for g_w, g_b, n in sums]
    if not leave_one_out:
        scores = [t / s[2].clamp_min(1.0) for t, s in zip(totals, sums)]
        return combine_references(scores, reference, norms)
    own_a = _residual_paired_inner_products(r_mix, h_mix, r, h, bias=bias)
    p = partner
    own_b = _residual_paired_inner_products(r_mix, h_mix, r[p], h[p], bias=bias)
    scores = [
        _leave_one_out(t, s[2], own_a, own_b, w.to(t.dtype), partner)
        for t, s, w in zip(totals, sums, weights)
    ]
    return combine_references(scores, reference, norms)


def flat_buffer_alignment(
    g_pool: Tensor,
    g_mix: Tensor,
    is_buffer: Tensor,
    partner: Tensor,
    *,
    leave_one_out: bool = True,
    reference: str = "buffer",
    reduce: Callable[..., None] | None = None,
) -> Tensor:
    """The same score from flattened per-sample gradients ``(N, P)`` of pool and candidates."""
    masks = reference_sets(is_buffer, reference)
    sums = []
    for m in masks:
        w = m.to(g_pool.dtype)
        sums.append(((g_pool * w.view(-1, 1)).sum(dim=0), w.sum()))
    if reduce is not None:
        reduce(*(t for s in sums for t in s))
    totals = [g_mix @ g for g, _ in sums]
    norms = None
    if reference == "balanced":
        norms = [_mean_norm((g,), c) for g, c in sums]
    if not leave_one_out:
        scores = [t / c.clamp_min(1.0) for t, (_, c) in zip(totals, sums)]
        return combine_references(scores, reference, norms)
    own_a = (g_mix * g_pool).sum(dim=1)
    own_b = (g_mix * g_pool[partner]).sum(dim=1)
    scores = [
        leave_one_out_mean(t, c, own_a, own_b, m, partner)
        for t, (_, c), m in zip(totals, sums, masks)
    ]
    return combine_references(scores, reference, norms)


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-sample cross-entropy against soft targets, ``(N,)``."""
    logp = F.log_softmax(_f(logits), dim=1)
    return -(targets.to(logp.dtype) * logp).sum(dim=1)


def _is_ddp(model: nn.Module) -> bool:
    return isinstance(model, nn.parallel.DistributedDataParallel)


def _trainable(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}


def per_sample_gradients(
    model: nn.Module,
    x: Tensor,
    targets: Tensor,
    *,
    chunk_size: int | None = 32,
    max_bytes: int = MAX_FULL_GRADIENT_BYTES,
) -> Tensor:
    """Exact per-sample gradients of soft cross-entropy, flattened: ``(N, P)``.

    :param model: the model; its trainable parameters define the space.
    :param x: ``(N, ...)`` inputs.
    :param targets: ``(N, C)`` soft targets.
    :param chunk_size: samples per vectorised chunk (memory bound).
    :param max_bytes: refuse (``ValueError`` naming the memory needed) when
        the ``N x P`` result would take more bytes than this.
    """
    from torch.func import functional_call, grad, vmap

    # torch.func cannot transform through DistributedDataParallel's forward;
    # the wrapped module holds the same parameters
    model = getattr(model, "module", model) if _is_ddp(model) else model
    params = _trainable(model)
    n_params = sum(p.numel() for p in params.values())
    itemsize = max((p.element_size() for p in params.values()), default=4)
    need = x.shape[0] * n_params * itemsize
    if need > max_bytes:
        raise ValueError(
            f"grad_space='full' needs {need / 2**30:.2f} GiB for the per-sample "
            f"gradients of {x.shape[0]} samples x {n_params} parameters (GradMix "
            f"holds two such matrices, {2 * need / 2**30:.2f} GiB), more than the "
            f"bound of {max_bytes / 2**30:.2f} GiB; use grad_space='last'"
        )
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    was_training = model.training
    model.eval()

    def loss_one(p, xi, ti):
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return soft_cross_entropy(out, ti.unsqueeze(0)).sum()

    try:
        grads = vmap(grad(loss_one), in_dims=(None, 0, 0), chunk_size=chunk_size)(
            params, x, targets
        )
    finally:
        model.train(was_training)
    return torch.cat([g.reshape(x.shape[0], -1) for g in grads.values()], dim=1)


def full_gradient_sum(
    model: nn.Module,
    x: Tensor,
    targets: Tensor,
    weights: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Weighted sum of per-sample gradients of all parameters: ``(P,)`` and count."""
    g = per_sample_gradients(model, x, targets)
    if weights is None:
        weights = torch.ones(x.shape[0], device=g.device)
    w = weights.to(device=g.device, dtype=g.dtype)
    return (g * w.view(-1, 1)).sum(dim=0), w.sum()


def full_inner_products(
    model: nn.Module, x: Tensor, targets: Tensor, reference: Tensor
) -> Tensor:
    """Inner product of each sample's full gradient with ``reference`` ``(P,)``."""
    return per_sample_gradients(model, x, targets) @ reference


__all__ = [
    "GRAD_SPACES",
    "REFERENCES",
    "HeadCapture",
    "check_reference",
    "combine_references",
    "find_linear_head",
    "flat_buffer_alignment",
    "full_gradient_sum",
    "full_inner_products",
    "last_layer_buffer_alignment",
    "last_layer_gradient_sum",
    "last_layer_inner_products",
    "last_layer_paired_inner_products",
    "leave_one_out_mean",
    "per_sample_gradients",
    "reference_sets",
    "soft_cross_entropy",
    "softmax_residual",
]
