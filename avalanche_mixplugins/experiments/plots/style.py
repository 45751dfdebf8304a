"""What every figure shares: a fixed colour per method, fitted axis limits, saving.

A method keeps its colour in every figure and every run
(:func:`method_style`), and y-axes are fitted to the data
(:func:`fitted_limits`). New figures are ``matplotlib.figure.Figure``
objects, which need no display and leave the user's pyplot backend alone.
"""

from __future__ import annotations

import os
import re
import zlib

import numpy as np
import torch
from matplotlib.figure import Figure

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


def axes_for(ax, figsize):
    """``(figure, axes)``: those of ``ax``, or a new ``Figure`` of ``figsize``."""
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def save_png(fig, path) -> None:
    """Write ``fig`` to ``path`` as a PNG when ``path`` is given."""
    if path is not None:
        fig.savefig(os.fspath(path), format="png", dpi=120, bbox_inches="tight")


def as_matrix(values) -> np.ndarray:
    """A 2-D float64 numpy array from a tensor, array or nested lists."""
    m = np.asarray(torch.as_tensor(values).detach().cpu().double())
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D matrix, got shape {m.shape}")
    return m


def colormap(name: str):
    """A registered matplotlib colour map by name."""
    from matplotlib import colormaps

    return colormaps[name]


__all__ = [
    "METHOD_COLORS",
    "as_matrix",
    "axes_for",
    "colormap",
    "fitted_limits",
    "method_style",
    "save_png",
]
