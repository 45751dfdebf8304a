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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avalanche_mixplugins.validation import check_head_features

GRAD_SPACES = ("last", "full")


def find_linear_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """Find the classification head of ``model``.

    timm models answer ``get_classifier()``; other models use their last
    ``nn.Linear`` in registration order (like Avalanche's
    ``get_last_fc_layer``).

    :return: ``(name, module)``.
    :raise ValueError: if the model has no linear layer.
    """
    getter = getattr(model, "get_classifier", None)
    if callable(getter):
        head = getter()
        if isinstance(head, nn.Linear):
            for name, mod in model.named_modules():
                if mod is head:
                    return name, head
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            last = (name, mod)
    if last is None:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear classification head, which "
            'grad_space="last" needs; use grad_space="full" (exact per-sample '
            "gradients of all parameters) for this model"
        )
    return last


class HeadCapture:
    """Record the input and output of a model's head at every model call.

    A forward pre-hook on the model notes the input tensor of each call; a
    forward hook on the head attaches the head's input ``h`` and output ``z``
    (both detached) to that call. :meth:`lookup` then finds the features of a
    given input batch by identity, so the features of a forward that already
    ran (the strategy's own) are reused instead of computed again.

    :param model: the whole model.
    :param head: its linear head (see :func:`find_linear_head`).
    """

    def __init__(self, model: nn.Module, head: nn.Module):
        self.model = model
        self.head = head
        self.enabled = True
        self.records: list[list] = []
        self._handles = [
            model.register_forward_pre_hook(self._on_model_call),
            head.register_forward_hook(self._on_head),
            model.register_forward_hook(self._on_model_return),
        ]

    def _on_model_call(self, module, args):
        if self.enabled and args:
            self.records.append([args[0], None, None])

    def _on_head(self, module, args, output):
        if not self.enabled or not args or not self.records:
            return
        self.records[-1][1] = args[0].detach()
        self.records[-1][2] = output.detach()

    def _on_model_return(self, module, args, output):
        # The logits of the loss are the model's output (a masking layer, as in
        # Avalanche's IncrementalClassifier, may follow the linear head).
        rec = self.records[-1] if self.enabled and self.records else None
        if rec is not None and isinstance(output, Tensor) and rec[2] is not None:
            if output.shape == rec[2].shape:
                rec[2] = output.detach()

    def lookup(self, x: Tensor) -> tuple[Tensor, Tensor] | None:
        """``(h, logits)`` recorded for the model call on ``x``, or ``None``.

        ``logits`` is the model's output when it has the head's shape, else
        the head's output.
        """
        for rec in reversed(self.records):
            if rec[0] is x and rec[1] is not None:
                return rec[1], rec[2]
        return None

    def clear(self) -> None:
        self.records.clear()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.records.clear()


def _f(t: Tensor) -> Tensor:
    """At least float32 (half and bfloat16 are promoted; float64 is kept)."""
    return t if t.dtype == torch.float64 else t.float()


def softmax_residual(logits: Tensor, targets: Tensor) -> Tensor:
    """``softmax(logits) - targets``: the gradient of soft cross-entropy in the logits."""
    return torch.softmax(_f(logits.detach()), dim=1) - targets.to(_f(logits).dtype)


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
    r = softmax_residual(logits, targets)
    if weights is None:
        weights = torch.ones(r.shape[0], device=r.device)
    r = r * weights.to(r.dtype).view(-1, 1)
    return r.t() @ _f(h).to(r.dtype), r.sum(dim=0), weights.to(r.dtype).sum()


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
    r = softmax_residual(logits, targets)
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
    r_b = softmax_residual(logits_b, targets_b).to(r_a.dtype)
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
    n = partner.shape[0]
    buf = is_buffer.to(total.dtype)
    distinct = partner != torch.arange(n, device=partner.device)
    in_a = buf
    in_b = buf[partner] * distinct.to(total.dtype)
    rest = count.to(total.dtype) - in_a - in_b
    inner = (total - in_a * own_a.to(total.dtype) - in_b * own_b.to(total.dtype)) / (
        rest.clamp_min(1.0)
    )
    return torch.where(rest > 0, inner, torch.full_like(inner, float("nan")))


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
) -> Tensor:
    """Exact per-sample gradients of soft cross-entropy, flattened: ``(N, P)``.

    :param model: the model; its trainable parameters define the space.
    :param x: ``(N, ...)`` inputs.
    :param targets: ``(N, C)`` soft targets.
    :param chunk_size: samples per vectorised chunk (memory bound).
    """
    from torch.func import functional_call, grad, vmap

    # torch.func cannot transform through DistributedDataParallel's forward;
    # the wrapped module holds the same parameters
    model = getattr(model, "module", model) if _is_ddp(model) else model
    params = _trainable(model)
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
    "HeadCapture",
    "find_linear_head",
    "full_gradient_sum",
    "full_inner_products",
    "last_layer_gradient_sum",
    "last_layer_inner_products",
    "last_layer_paired_inner_products",
    "leave_one_out_mean",
    "per_sample_gradients",
    "soft_cross_entropy",
    "softmax_residual",
]
