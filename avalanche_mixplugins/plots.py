"""Plot helpers (matplotlib).

New figures are ``matplotlib.figure.Figure`` objects, which need no display
and leave the user's pyplot backend alone; pass ``ax=`` to draw into an
existing figure, ``path=`` to write a PNG.

* :func:`reliability_diagram`: accuracy and mean confidence per equal-width
  confidence bin (Niculescu-Mizil & Caruana, ICML 2005; Guo et al., ICML 2017),
  with the ECE of the same bins in the legend.
* :func:`pair_score_heatmap`: GradMix's class-pair score matrix.
* :func:`accuracy_matrix_heatmap`: accuracy on experience ``j`` after training
  on experience ``i``.
* :func:`accuracy_curves`: a metric after each experience, one line per method.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from matplotlib.figure import Figure
from torchmetrics.functional.classification import binary_calibration_error


def _axes(ax, figsize):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _save(fig, path) -> None:
    if path is not None:
        fig.savefig(os.fspath(path), format="png", dpi=120, bbox_inches="tight")


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
    return reliability_diagram_from_confidence(
        conf, correct, n_bins=n_bins, path=path, ax=ax, title=title
    )


def reliability_diagram_from_confidence(
    confidence,
    correct,
    *,
    n_bins: int = 15,
    path: str | os.PathLike | None = None,
    ax=None,
    title: str | None = None,
):
    """:func:`reliability_diagram` from top-label confidences and correctness.

    :param confidence: ``(N,)`` top-label probabilities.
    :param correct: ``(N,)`` 1 where the top label is right, else 0.
    """
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    n_bins = int(n_bins)
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    correct = np.asarray(correct, dtype=np.float64).reshape(-1)
    if conf.shape != correct.shape:
        raise ValueError(f"{conf.shape[0]} confidences but {correct.shape[0]} outcomes")
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
    if conf.shape[0]:
        ece = float(
            binary_calibration_error(
                torch.from_numpy(conf).float(),
                torch.from_numpy(correct).long(),
                n_bins=n_bins,
            )
        )
    else:
        ece = float("nan")

    fig, ax = _axes(ax, (4.5, 4.5))
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
    _save(fig, path)
    return fig


def _matrix(values) -> np.ndarray:
    m = np.asarray(torch.as_tensor(values).detach().cpu().double())
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D matrix, got shape {m.shape}")
    return m


def pair_score_heatmap(
    scores,
    *,
    seen=None,
    class_names=None,
    path: str | os.PathLike | None = None,
    ax=None,
    title: str | None = None,
):
    """Heatmap of GradMix's ``C x C`` class-pair scores.

    Positive (helpful) pairs are blue, negative (detrimental) red, on a scale
    symmetric around 0; pairs never scored (``seen`` false) are left blank.

    :param scores: ``(C, C)`` matrix, e.g. ``GradMixPlugin.pair_scores``.
    :param seen: optional bool ``(C, C)``, e.g. ``GradMixPlugin.scored_pairs``.
    :param class_names: optional labels of the axes.
    :return: the matplotlib ``Figure``.
    """
    m = _matrix(scores)
    if m.shape[0] != m.shape[1]:
        raise ValueError(f"pair scores must be square, got shape {m.shape}")
    if seen is not None:
        mask = _matrix(seen) > 0
        m = np.where(mask, m, np.nan)
    fig, ax = _axes(ax, (5.2, 4.5))
    lim = float(np.nanmax(np.abs(m))) if np.isfinite(m).any() else 1.0
    image = ax.imshow(m, cmap="RdBu", vmin=-lim, vmax=lim)
    fig.colorbar(image, ax=ax, label="mean <g_mix, g_buffer>")
    ticks = np.arange(m.shape[0])
    names = list(class_names) if class_names is not None else [str(i) for i in ticks]
    ax.set_xticks(ticks, names, rotation=90 if class_names is not None else 0)
    ax.set_yticks(ticks, names)
    ax.set_xlabel("class")
    ax.set_ylabel("class")
    ax.set_title(title if title is not None else "GradMix class-pair scores")
    _save(fig, path)
    return fig


def accuracy_matrix_heatmap(
    matrix,
    *,
    path: str | os.PathLike | None = None,
    ax=None,
    title: str | None = None,
):
    """Heatmap of ``A[i, j]``: accuracy on experience ``j`` after training on ``i``."""
    m = _matrix(matrix)
    fig, ax = _axes(ax, (4.8, 4.2))
    image = ax.imshow(m, cmap="viridis", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="accuracy")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if np.isfinite(m[i, j]):
                color = "white" if m[i, j] < 0.5 else "black"
                ax.text(
                    j,
                    i,
                    f"{m[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color=color,
                )
    ax.set_xlabel("evaluated on experience")
    ax.set_ylabel("after training on experience")
    ax.set_title(title if title is not None else "Accuracy matrix")
    _save(fig, path)
    return fig


def accuracy_curves(
    curves,
    *,
    path: str | os.PathLike | None = None,
    ax=None,
    ylabel: str = "average accuracy on seen experiences",
    title: str | None = None,
):
    """One line per method of a metric after each experience, with a std band.

    :param curves: mapping ``name -> (mean, std)`` of equal-length sequences
        (``std`` may be ``None``).
    """
    if not curves:
        raise ValueError("curves is empty: give at least one method")
    fig, ax = _axes(ax, (5.5, 4.0))
    for name, (mean, std) in curves.items():
        mean = np.asarray(mean, dtype=float)
        x = np.arange(1, len(mean) + 1)
        ax.plot(x, mean, marker="o", label=name)
        if std is not None:
            std = np.asarray(std, dtype=float)
            ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("experiences trained")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title if title is not None else "")
    _save(fig, path)
    return fig


__all__ = [
    "accuracy_curves",
    "accuracy_matrix_heatmap",
    "pair_score_heatmap",
    "reliability_diagram",
    "reliability_diagram_from_confidence",
]
