"""Plot helpers (matplotlib).

New figures are ``matplotlib.figure.Figure`` objects, which need no display
and leave the user's pyplot backend alone; pass ``ax=`` to draw into an
existing figure, ``path=`` to write a PNG.

* :func:`reliability_diagram`: accuracy and mean confidence per equal-width
  confidence bin (Niculescu-Mizil & Caruana, ICML 2005; Guo et al., ICML 2017);
  the title gives accuracy, mean confidence and ECE, the legend explains the
  over- and under-confidence gap bars.
* :func:`pair_score_heatmap`: GradMix's class-pair score matrix on a
  diverging scale centred at zero, unscored pairs grey and hatched, the
  helpful/detrimental counts in the title.
* :func:`accuracy_matrix_heatmap`: accuracy on experience ``j`` after training
  on experience ``i``.
* :func:`accuracy_curves`: a metric after each experience, one line per method,
  the y-axis fitted to the data and colours from :func:`method_style`, so a
  method has the same colour in every figure.
"""

from __future__ import annotations

import os
import re
import zlib

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from torchmetrics.functional.classification import binary_calibration_error

METHOD_COLORS: dict[str, str] = {
    "none": "tab:gray",
    "mixup": "tab:blue",
    "cutmix": "tab:orange",
    "gradmix": "tab:green",
    "calibratemix-fast": "tab:purple",
    "calibratemix-faithful": "tab:brown",
}
"""Colour of each augmentation, the part of a method name after ``+``
(``"er+gradmix"`` -> ``"gradmix"``; a name without ``+`` is ``"none"``)."""

_SPARE_COLORS = ("tab:red", "tab:pink", "tab:olive", "tab:cyan", "black", "gold")
_VARIANT_STYLES = ("--", ":", "-.")


def _augmentation(name: str) -> tuple[str, str]:
    """``"er+mixup(buffer_current)"`` -> ``("mixup", "buffer_current")``."""
    aug = name.split("+", 1)[1] if "+" in name else "none"
    match = re.fullmatch(r"(.*?)\((.*)\)", aug)
    if match:
        return match.group(1), match.group(2)
    return aug, ""


def method_style(name: str) -> dict[str, str]:
    """Fixed line style of a method: the same in every figure and every run.

    The colour depends only on the augmentation (:data:`METHOD_COLORS`; an
    unknown one gets a colour from a hash of its name, stable across
    processes), so ``"er+gradmix"`` and ``"der+gradmix"`` share green. A
    variant in parentheses (``"er+mixup(buffer_current)"``) keeps the colour
    and gets a dashed or dotted line.

    :param name: a method name of the examples' result files.
    :return: ``{"color": ..., "linestyle": ...}`` for ``Axes.plot``.
    """
    if not isinstance(name, str):
        raise ValueError(f"method name must be a string, got {name!r}")
    aug, variant = _augmentation(name)
    color = METHOD_COLORS.get(aug)
    if color is None:
        color = _SPARE_COLORS[zlib.crc32(aug.encode()) % len(_SPARE_COLORS)]
    linestyle = "-"
    if variant:
        linestyle = _VARIANT_STYLES[zlib.crc32(variant.encode()) % len(_VARIANT_STYLES)]
    return {"color": color, "linestyle": linestyle}


def fitted_limits(
    low: float, high: float, *, margin: float = 0.08, min_span: float = 0.05
) -> tuple[float, float]:
    """Axis limits around ``[low, high]`` with a margin, kept inside [0, 1]
    when the data are.

    :param low: smallest value drawn.
    :param high: largest value drawn.
    :param margin: fraction of the span added on each side.
    :param min_span: smallest span shown (flat curves do not fill the axes).
    :return: ``(bottom, top)``.
    """
    if not (np.isfinite(low) and np.isfinite(high)):
        return 0.0, 1.0
    center, span = (low + high) / 2, max(high - low, min_span)
    bottom = center - span / 2 - margin * span
    top = center + span / 2 + margin * span
    if low >= 0.0 and high <= 1.0:
        # slide the window back inside [0, 1], keeping its span
        shift = max(0.0, top - 1.0) - max(0.0, -bottom)
        bottom, top = max(bottom - shift, 0.0), min(top - shift, 1.0)
    return float(bottom), float(top)


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

    fig, ax = _axes(ax, (4.8, 4.8))
    width = 1.0 / n_bins
    centers = edges[:-1] + width / 2
    over = nonempty & (mean_conf > acc)
    under = nonempty & (mean_conf < acc)
    # opaque bars, no overlap: the accuracy bar is blue up to
    # min(accuracy, confidence); the gap between the two is red above it
    # (over-confident) or orange below the bar's top (under-confident)
    ax.bar(
        centers[nonempty],
        np.minimum(acc, mean_conf)[nonempty],
        width=width,
        color="tab:blue",
        edgecolor="black",
        linewidth=0.6,
    )
    ax.bar(
        centers[over],
        (mean_conf - acc)[over],
        bottom=acc[over],
        width=width,
        color="#f4a6a6",
        edgecolor="tab:red",
        hatch="//",
        linewidth=0.6,
    )
    ax.bar(
        centers[under],
        (acc - mean_conf)[under],
        bottom=mean_conf[under],
        width=width,
        color="#fdd49e",
        edgecolor="tab:orange",
        hatch="\\\\",
        linewidth=0.6,
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (mean in bin)")
    ax.set_ylabel("accuracy in bin")
    handles = [
        Patch(facecolor="tab:blue", edgecolor="black", label="accuracy (bar top)"),
        Patch(
            facecolor="#f4a6a6",
            edgecolor="tab:red",
            hatch="//",
            label="gap: confidence > accuracy (over-confident)",
        ),
        Patch(
            facecolor="#fdd49e",
            edgecolor="tab:orange",
            hatch="\\\\",
            label="gap: accuracy > confidence (under-confident)",
        ),
        ax.lines[-1],
    ]
    handles[-1].set_label("perfect calibration")
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.13),
        ncol=2,
        fontsize=7,
        frameon=False,
        title=f"ECE = {ece:.4f}",
        title_fontsize=7,
    )
    n = conf.shape[0]
    summary = (
        f"accuracy {correct.mean():.3f}, confidence {conf.mean():.3f}, "
        f"ECE {ece:.3f} ({n_bins} bins, n={n})"
        if n
        else "no predictions"
    )
    head = title if title is not None else "Reliability diagram"
    ax.set_title(f"{head}\n{summary}", fontsize=9)
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
    m = _matrix(scores)
    if m.shape[0] != m.shape[1]:
        raise ValueError(f"pair scores must be square, got shape {m.shape}")
    scored = np.isfinite(m)
    if seen is not None:
        seen_m = _matrix(seen)
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

    fig, ax = _axes(ax, (5.8, 5.2))
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
    cmap = _colormap("RdBu").with_extremes(bad="#d9d9d9")
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
    _save(fig, path)
    return fig


def _colormap(name: str):
    from matplotlib import colormaps

    return colormaps[name]


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
    ylim: tuple[float, float] | None = None,
):
    """One line per method of a metric after each experience, with a std band.

    Each method's colour and line style come from :func:`method_style`, so a
    method looks the same in every figure; the y-axis is fitted to the
    curves and their bands (:func:`fitted_limits`), not fixed to ``[0, 1]``.

    :param curves: mapping ``name -> (mean, std)`` of equal-length sequences
        (``std`` may be ``None``).
    :param ylim: ``(bottom, top)`` to override the fitted limits, e.g. the
        same for every panel of a figure.
    """
    if not curves:
        raise ValueError("curves is empty: give at least one method")
    fig, ax = _axes(ax, (5.5, 4.0))
    low, high = np.inf, -np.inf
    longest = 0
    for name, (mean, std) in curves.items():
        mean = np.asarray(mean, dtype=float).reshape(-1)
        x = np.arange(1, len(mean) + 1)
        longest = max(longest, len(mean))
        style = method_style(str(name))
        ax.plot(x, mean, marker="o", label=name, **style)
        lo, hi = mean, mean
        if std is not None:
            std = np.asarray(std, dtype=float).reshape(-1)
            if std.shape != mean.shape:
                raise ValueError(
                    f"{name}: std has {std.shape[0]} values but mean has {mean.shape[0]}"
                )
            lo, hi = mean - std, mean + std
            ax.fill_between(x, lo, hi, alpha=0.15, color=style["color"], linewidth=0)
        if np.isfinite(lo).any():
            low = min(low, float(np.nanmin(lo)))
            high = max(high, float(np.nanmax(hi)))
    ax.set_xlabel("experiences trained")
    ax.set_ylabel(ylabel)
    ax.set_xticks(np.arange(1, longest + 1))
    ax.set_ylim(*(ylim if ylim is not None else fitted_limits(low, high)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title if title is not None else "")
    _save(fig, path)
    return fig


__all__ = [
    "METHOD_COLORS",
    "accuracy_curves",
    "accuracy_matrix_heatmap",
    "fitted_limits",
    "method_style",
    "pair_score_heatmap",
    "reliability_diagram",
    "reliability_diagram_from_confidence",
]
