"""Plot helpers (matplotlib, Agg backend: files only, no display needed).

* :func:`reliability_diagram`: accuracy and mean confidence per equal-width
  confidence bin (Niculescu-Mizil & Caruana, ICML 2005; Guo et al., ICML 2017),
  with the ECE of the same bins in the legend.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchmetrics.functional.classification import binary_calibration_error  # noqa: E402


def _as_probabilities(probs_or_logits) -> np.ndarray:
    x = torch.as_tensor(probs_or_logits).detach().to("cpu", torch.float64)
    if x.dim() != 2:
        raise ValueError(
            f"expected probabilities or logits of shape (N, C), got {tuple(x.shape)}"
        )
    rows_are_probs = bool(
        x.numel() == 0
        or (
            (x >= 0).all()
            and (x <= 1).all()
            and torch.allclose(x.sum(1), torch.ones(len(x), dtype=x.dtype), atol=1e-4)
        )
    )
    if not rows_are_probs:
        x = x.softmax(dim=1)
    return x.numpy()


def reliability_diagram(
    probs_or_logits,
    labels,
    *,
    n_bins: int = 15,
    path: str | os.PathLike | None = None,
    ax=None,
    title: str | None = None,
):
    """Draw a reliability diagram of top-label confidence.

    Rows that are non-negative and sum to 1 are taken as probabilities; any
    other input is treated as logits and passed through a softmax. Labels
    outside the columns count as errors.

    :param probs_or_logits: ``(N, C)`` array or tensor.
    :param labels: ``(N,)`` integer labels.
    :param n_bins: equal-width bins of ``[0, 1]`` (15).
    :param path: if given, the figure is written there as a PNG.
    :param ax: matplotlib axes to draw into (a new figure otherwise).
    :param title: axes title.
    :return: the matplotlib ``Figure``.
    """
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    n_bins = int(n_bins)
    probs = _as_probabilities(probs_or_logits)
    labels = torch.as_tensor(labels).reshape(-1).cpu().numpy().astype(np.int64)
    if labels.shape[0] != probs.shape[0]:
        raise ValueError(
            f"{probs.shape[0]} rows of predictions but {labels.shape[0]} labels"
        )
    if probs.shape[0]:
        conf = probs.max(axis=1)
        correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    else:
        conf = correct = np.zeros(0)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=False), 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins).astype(np.float64)
    acc = np.bincount(idx, weights=correct, minlength=n_bins)
    mean_conf = np.bincount(idx, weights=conf, minlength=n_bins)
    nonempty = counts > 0
    acc[nonempty] /= counts[nonempty]
    mean_conf[nonempty] /= counts[nonempty]
    # the legend's ECE comes from torchmetrics (top-label ECE is the binary
    # calibration error of (confidence, correct)); the bars above are only
    # for drawing (confidence 1.0 falls in the last bar)
    if probs.shape[0]:
        ece = float(
            binary_calibration_error(
                torch.from_numpy(conf).float(),
                torch.from_numpy(correct).long(),
                n_bins=n_bins,
            )
        )
    else:
        ece = float("nan")

    if ax is None:
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
    else:
        fig = ax.figure
    width = 1.0 / n_bins
    centers = edges[:-1] + width / 2
    ax.bar(
        centers[nonempty],
        acc[nonempty],
        width=width,
        edgecolor="black",
        color="tab:blue",
        label="accuracy",
    )
    ax.bar(
        centers[nonempty],
        (mean_conf - acc)[nonempty],
        bottom=acc[nonempty],
        width=width,
        edgecolor="tab:red",
        color="tab:red",
        alpha=0.3,
        label="gap",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(title if title is not None else f"Reliability ({n_bins} bins)")
    ax.legend(loc="upper left", title=f"ECE = {ece:.4f}")
    if path is not None:
        fig.savefig(os.fspath(path), format="png", dpi=120, bbox_inches="tight")
    return fig


__all__ = ["reliability_diagram"]
