"""Heatmaps: GradMix's class-pair scores and the accuracy matrix of a run.

* :func:`pair_score_heatmap`: the ``C x C`` score matrix on a diverging scale
  centred at zero, unscored pairs grey and hatched, the helpful/detrimental
  counts in the title.
* :func:`accuracy_matrix_heatmap`: accuracy on experience ``j`` after
  training on experience ``i``.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.patches import Patch, Rectangle

from avalanche_mixplugins.experiments.plots.style import (
    as_matrix,
    axes_for,
    colormap,
    save_png,
)


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

    Helpful pairs (score > 0, mixed by GradMix) are blue, detrimental ones
    (score <= 0, not mixed) red, on a diverging colour map centred at zero
    (limits symmetric around 0). Pairs never scored (``seen`` false, or a
    non-finite score) are drawn grey and hatched. The title counts helpful,
    detrimental and unscored class pairs ``a <= b``, as
    ``GradMixPlugin.helpful_pairs()`` and ``helpful_fraction()`` do.

    :param scores: ``(C, C)`` matrix, e.g. ``GradMixPlugin.pair_scores``.
    :param seen: optional bool ``(C, C)``, e.g. ``GradMixPlugin.scored_pairs``;
        default: every finite score counts as scored.
    :param class_names: optional labels of the axes.
    :return: the matplotlib ``Figure``.
    """
    m = as_matrix(scores)
    if m.shape[0] != m.shape[1]:
        raise ValueError(f"pair scores must be square, got shape {m.shape}")
    scored = np.isfinite(m)
    if seen is not None:
        seen_m = as_matrix(seen)
        if seen_m.shape != m.shape:
            raise ValueError(
                f"seen must have the shape of scores {m.shape}, got {seen_m.shape}"
            )
        scored &= seen_m > 0
    masked = np.ma.masked_array(np.where(scored, m, 0.0), mask=~scored)
    upper = np.triu(np.ones_like(scored, dtype=bool))
    n_helpful = int((scored & upper & (m > 0)).sum())
    n_bad = int((scored & upper & ~(m > 0)).sum())
    n_unscored = int((~scored & upper).sum())

    fig, ax = axes_for(ax, (5.8, 5.2))
    # the colour scale saturates at the 90th percentile of |score|, so one
    # large pair does not wash the others out; the sign (helpful or not)
    # stays readable and the colour bar marks the clipped ends
    magnitudes = np.abs(m[scored])
    lim = float(np.quantile(magnitudes, 0.9)) if magnitudes.size else 1.0
    if not lim > 0:
        lim = (
            float(magnitudes.max()) if magnitudes.size and magnitudes.max() > 0 else 1.0
        )
    extend = "both" if magnitudes.size and magnitudes.max() > lim else "neither"
    cmap = colormap("RdBu").with_extremes(bad="#d9d9d9")
    image = ax.imshow(masked, cmap=cmap, vmin=-lim, vmax=lim)
    for i, j in zip(*np.nonzero(~scored)):
        ax.add_patch(
            Rectangle(
                (j - 0.5, i - 0.5),
                1,
                1,
                facecolor="#d9d9d9",
                edgecolor="#8c8c8c",
                hatch="///",
                linewidth=0.0,
            )
        )
    fig.colorbar(
        image,
        ax=ax,
        extend=extend,
        label="score: mean <g_mix, g_buffer> (0 at centre)",
    )
    ticks = np.arange(m.shape[0])
    names = list(class_names) if class_names is not None else [str(i) for i in ticks]
    ax.set_xticks(ticks, names, rotation=90 if class_names is not None else 0)
    ax.set_yticks(ticks, names)
    ax.set_xlabel("class")
    ax.set_ylabel("class")
    if n_unscored:
        ax.legend(
            handles=[
                Patch(
                    facecolor="#d9d9d9",
                    edgecolor="#8c8c8c",
                    hatch="///",
                    label="not scored",
                )
            ],
            loc="upper left",
            bbox_to_anchor=(0.0, -0.12),
            fontsize=7,
            frameon=False,
        )
    head = title if title is not None else "GradMix class-pair scores"
    ax.set_title(
        f"{head}\nhelpful (>0): {n_helpful}, detrimental (<=0): {n_bad}, "
        f"unscored: {n_unscored}\n(class pairs a <= b, {int(upper.sum())} in all)",
        fontsize=9,
    )
    save_png(fig, path)
    return fig


def accuracy_matrix_heatmap(
    matrix,
    *,
    path: str | os.PathLike | None = None,
    ax=None,
    title: str | None = None,
):
    """Heatmap of ``A[i, j]``: accuracy on experience ``j`` after training on ``i``."""
    m = as_matrix(matrix)
    fig, ax = axes_for(ax, (4.8, 4.2))
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
    save_png(fig, path)
    return fig


__all__ = ["accuracy_matrix_heatmap", "pair_score_heatmap"]
