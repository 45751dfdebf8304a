"""Figures of the examples and benchmarks (matplotlib).

New figures are ``matplotlib.figure.Figure`` objects, which need no display
and leave the user's pyplot backend alone; pass ``ax=`` to draw into an
existing figure, ``path=`` to write a PNG.

* :func:`reliability_diagram` (:mod:`.reliability`): accuracy and mean
  confidence per confidence bin, with ECE, and
  :func:`reliability_diagrams_side_by_side` (several runs, one panel each);
* :func:`pair_score_heatmap` and :func:`accuracy_matrix_heatmap`
  (:mod:`.heatmaps`): GradMix's class-pair scores, accuracy per experience;
* :func:`accuracy_curves` (:mod:`.curves`): a metric after each experience,
  one line per method;
* :func:`method_style` and :func:`fitted_limits` (:mod:`.style`): a fixed
  colour per method, y-axes fitted to the data.
"""

from avalanche_mixplugins.experiments.plots.curves import accuracy_curves
from avalanche_mixplugins.experiments.plots.heatmaps import (
    accuracy_matrix_heatmap,
    pair_score_heatmap,
)
from avalanche_mixplugins.experiments.plots.reliability import (
    reliability_diagram,
    reliability_diagram_from_confidence,
    reliability_diagrams_side_by_side,
)
from avalanche_mixplugins.experiments.plots.style import (
    METHOD_COLORS,
    fitted_limits,
    method_style,
)

__all__ = [
    "METHOD_COLORS",
    "accuracy_curves",
    "accuracy_matrix_heatmap",
    "fitted_limits",
    "method_style",
    "pair_score_heatmap",
    "reliability_diagram",
    "reliability_diagram_from_confidence",
    "reliability_diagrams_side_by_side",
]
