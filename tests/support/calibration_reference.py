"""ECE, MCE, NLL and Brier computed in numpy: the reference of the metric tests."""

from __future__ import annotations

import numpy as np


def np_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def np_reference(logits, labels, n_bins, eps=1e-12):
    """ECE, MCE, NLL, Brier in numpy; labels beyond the columns get probability 0."""
    probs = np_softmax(logits.astype(np.float64))
    width = max(probs.shape[1], labels.max() + 1)
    probs = np.pad(probs, ((0, 0), (0, width - probs.shape[1])))
    conf = probs.max(axis=1).astype(np.float32)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0, 1, n_bins + 1, dtype=np.float32)
    bins = np.searchsorted(edges, conf, side="right") - 1  # [b_i, b_i+1)
    ece, mce = 0.0, 0.0
    for b in np.unique(bins):
        sel = bins == b
        gap = abs(correct[sel].mean() - conf[sel].astype(np.float64).mean())
        ece += sel.mean() * gap
        mce = max(mce, gap)
    p_y = probs[np.arange(len(labels)), labels]
    nll = -np.log(np.maximum(p_y, eps)).mean()
    onehot = np.eye(width)[labels]
    brier = ((probs - onehot) ** 2).sum(axis=1).mean()
    return ece, mce, nll, brier
