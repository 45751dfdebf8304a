"""Reliability diagrams: accuracy against confidence per equal-width bin.

Niculescu-Mizil & Caruana, ICML 2005; Guo et al., ICML 2017. Each bin's blue
bar reaches the accuracy of its samples; a hatched box marks the gap from
there to their mean confidence, red above the bar (over-confident) or
orange over the bar's top (under-confident). The title gives accuracy, mean
confidence and ECE (torchmetrics' binary calibration error of top-label
confidence and correctness). :func:`reliability_diagrams_side_by_side` puts
several runs in one figure, one panel each, for a before/after comparison.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torchmetrics.functional.classification import binary_calibration_error

from avalanche_mixplugins.experiments.plots.style import axes_for, save_png
from avalanche_mixplugins.validation import check_n_bins

BAR_LOOKS = (
    {
        "facecolor": "tab:blue",
        "edgecolor": "black",
        "label": "accuracy in bin (bar top)",
    },
    {
        "facecolor": "#f4a6a6",
        "edgecolor": "tab:red",
        "hatch": "//",
        "label": "over-confident: confidence above the bar (box top)",
    },
    {
        "facecolor": "none",
        "edgecolor": "tab:orange",
        "hatch": "\\\\",
        "label": "under-confident: confidence below the bar top (box bottom)",
    },
)
"""Colours, hatches and legend labels of the accuracy bar and the two gap boxes."""


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
    n_bins = check_n_bins(n_bins)
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
    n_bins = check_n_bins(n_bins)
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
    # the title's ECE comes from torchmetrics (top-label ECE is the binary
    # calibration error of (confidence, correct)); the bins above are only
    # for drawing (confidence 1.0 falls in the last bin)
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

    fig, ax = axes_for(ax, (4.8, 4.8))
    width = 1.0 / n_bins
    centers = edges[:-1] + width / 2
    # the blue bar always reaches the accuracy; the gap to the mean
    # confidence is a hatched box above it (over-confident, opaque red) or
    # over its top (under-confident, orange hatch only, the blue shows
    # through): no blended colour, every edge means one number
    bars = (
        (nonempty, acc, 0.0),
        (nonempty & (mean_conf > acc), mean_conf - acc, acc),
        (nonempty & (mean_conf < acc), acc - mean_conf, mean_conf),
    )
    handles = []
    for (shown, height, bottom), look in zip(bars, BAR_LOOKS):
        bottom = np.broadcast_to(bottom, height.shape)
        ax.bar(
            centers[shown],
            height[shown],
            bottom=bottom[shown],
            width=width,
            color=look["facecolor"],
            edgecolor=look["edgecolor"],
            hatch=look.get("hatch"),
            linewidth=0.6,
            label="_nolegend_",
        )
        handles.append(Patch(**look))
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (bin)")
    ax.set_ylabel("accuracy in bin")
    handles.append(ax.lines[-1])
    handles[-1].set_label("perfect calibration")
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.13),
        ncol=1,
        fontsize=7,
        frameon=False,
    )
    n = conf.shape[0]
    summary = (
        f"accuracy {correct.mean():.3f}, confidence {conf.mean():.3f}\n"
        f"ECE {ece:.3f} ({n_bins} bins, n={n})"
        if n
        else "no predictions"
    )
    head = title if title is not None else "Reliability diagram"
    ax.set_title(f"{head}\n{summary}", fontsize=9)
    save_png(fig, path)
    return fig


def reliability_diagrams_side_by_side(
    runs: Mapping[str, tuple],
    *,
    n_bins: int = 15,
    path: str | os.PathLike | None = None,
    title: str | None = None,
):
    """One reliability diagram per run, side by side on shared axes limits.

    For a before/after reading (a base semi-supervised algorithm and the same
    algorithm with CalibrateMix, say): every panel uses the same bins, and
    the legend, the same for every panel, is drawn under the first one.

    :param runs: ``{panel title: (confidence, correct)}``, in panel order;
        ``confidence`` and ``correct`` as for
        :func:`reliability_diagram_from_confidence`.
    :param n_bins: equal-width bins of ``[0, 1]`` (15).
    :param path: if given, the figure is written there as a PNG.
    :param title: figure title above the panels.
    :return: the matplotlib ``Figure`` (one axes per run).
    """
    n_bins = check_n_bins(n_bins)
    if not runs:
        raise ValueError("reliability_diagrams_side_by_side needs at least one run")
    fig = Figure(figsize=(4.8 * len(runs), 5.4))
    axes = fig.subplots(1, len(runs), squeeze=False)[0]
    for i, (ax, (name, (confidence, correct))) in enumerate(zip(axes, runs.items())):
        reliability_diagram_from_confidence(
            confidence, correct, n_bins=n_bins, ax=ax, title=name
        )
        if i:
            ax.get_legend().remove()
    if title is not None:
        fig.suptitle(title)
    save_png(fig, path)
    return fig


__all__ = [
    "reliability_diagram",
    "reliability_diagram_from_confidence",
    "reliability_diagrams_side_by_side",
]
