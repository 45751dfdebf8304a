"""Brute-force GradMix scores from autograd, for the tests that check them.

For every candidate (a mixed sample), the gradient of its own soft-target
loss and of the mean loss of each of its two leave-one-out sets (the step's
buffer samples and current samples, without the candidate's two sources),
each from its own ``torch.autograd.grad`` call, one sample set at a time:
nothing of the package's closed forms is used.
"""

from __future__ import annotations

import torch
from torch import nn


def soft_ce(logits, targets, mask=None):
    """Summed soft-target cross-entropy, masked logits left out of the softmax."""
    if mask is not None:
        logits = logits.masked_fill(mask, float("-inf"))
    logp = torch.log_softmax(logits, dim=1)
    if mask is not None:
        logp = logp.masked_fill(mask, 0.0)
    return -(targets * logp).sum()


def grad(loss, params):
    """Gradient of ``loss`` with respect to ``params`` (a tuple, one per tensor)."""
    return torch.autograd.grad(loss, params)


def dot(a, b) -> float:
    """Inner product of two gradients given as tuples of tensors."""
    return float(sum((u * v).sum() for u, v in zip(a, b)))


def leave_one_out_scores(
    forward, params, x, y, is_buffer, x_mix, t_mix, partner, mask, c
):
    """Per candidate ``i``: ``[score vs its buffer set, score vs its current set]``.

    A score is the inner product of the gradient of candidate ``i``'s loss
    (``mask`` row ``i`` applied to its logits, if given) with the gradient of
    the mean full-softmax loss of the set, without samples ``i`` and
    ``partner[i]``; NaN when that set is empty. In ``x``'s dtype.
    """
    out = []
    for i in range(x_mix.shape[0]):
        own = {i, int(partner[i])}
        m = None if mask is None else mask[i : i + 1]
        g_i = grad(soft_ce(forward(x_mix[i : i + 1]), t_mix[i : i + 1], m), params)
        row = []
        for want_buffer in (True, False):
            idx = [
                k
                for k in range(x.shape[0])
                if bool(is_buffer[k]) == want_buffer and k not in own
            ]
            if not idx:
                row.append(float("nan"))
                continue
            idx = torch.tensor(idx)
            t = nn.functional.one_hot(y[idx], c).to(x.dtype)
            g_set = grad(soft_ce(forward(x[idx]), t) / len(idx), params)
            row.append(dot(g_i, g_set))
        out.append(row)
    return torch.tensor(out, dtype=x.dtype)


def set_norms(forward, params, x, y, is_buffer, c) -> list[float]:
    """Norms of the mean-loss gradients of the whole buffer set and current set."""
    norms = []
    for idx in (is_buffer.nonzero().flatten(), (~is_buffer).nonzero().flatten()):
        t = nn.functional.one_hot(y[idx], c).to(x.dtype)
        g = grad(soft_ce(forward(x[idx]), t) / len(idx), params)
        norms.append(dot(g, g) ** 0.5)
    return norms
