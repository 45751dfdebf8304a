"""Curves of a metric after each experience, one line per method."""

from __future__ import annotations

import os

import numpy as np

from avalanche_mixplugins.experiments.plots.style import (
    axes_for,
    fitted_limits,
    method_style,
    save_png,
)


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
    fig, ax = axes_for(ax, (5.5, 4.0))
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
    save_png(fig, path)
    return fig


__all__ = ["accuracy_curves"]
