"""Behaviour of the plot helpers: what a reader sees, checked on the axes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from avalanche_mixplugins.calibration import ExpectedCalibrationError
from avalanche_mixplugins.experiments import plots


def _line_colors(ax) -> dict[str, str]:
    return {line.get_label(): to_hex(line.get_color()) for line in ax.get_lines()}


def test_accuracy_curves_fit_the_y_axis_to_the_data():
    fig = plots.accuracy_curves(
        {
            "er+mixup": ([0.91, 0.86, 0.83], [0.01, 0.02, 0.01]),
            "er+gradmix": ([0.92, 0.88, 0.85], None),
        }
    )
    bottom, top = fig.axes[0].get_ylim()
    # every point and band inside, and not the fixed 0-1 range
    assert 0.7 < bottom <= 0.82 and 0.92 <= top < 1.0
    # a flat curve still gets a readable span, and limits stay inside [0, 1]
    fig = plots.accuracy_curves({"er+none": ([0.999, 0.999], None)})
    bottom, top = fig.axes[0].get_ylim()
    assert top == 1.0 and top - bottom >= 0.05
    ax = Figure().subplots()
    plots.accuracy_curves({"er+none": ([0.5, 0.4], None)}, ax=ax, ylim=(0.2, 0.6))
    assert ax.get_ylim() == (0.2, 0.6)


def test_method_colours_are_fixed_across_figures_and_strategies():
    first = Figure().subplots()
    plots.accuracy_curves(
        {"er+none": ([0.5], None), "er+gradmix": ([0.6], None)}, ax=first
    )
    second = Figure().subplots()
    plots.accuracy_curves(
        {
            "der+cutmix": ([0.4], None),
            "der+gradmix": ([0.5], None),
            "der+mixup": ([0.45], None),
        },
        ax=second,
    )
    a, b = _line_colors(first), _line_colors(second)
    assert a["er+gradmix"] == b["der+gradmix"] == to_hex("tab:green")
    assert a["er+none"] == to_hex(plots.METHOD_COLORS["none"])
    assert len({b["der+cutmix"], b["der+gradmix"], b["der+mixup"]}) == 3
    # a variant keeps its method's colour and gets another line style
    base = plots.method_style("er+mixup")
    variant = plots.method_style("er+mixup(buffer_current)")
    assert variant["color"] == base["color"] and variant["linestyle"] != "-"
    # SSL names: the algorithm alone is "none"; unknown names are stable
    assert plots.method_style("softmatch")["color"] == plots.METHOD_COLORS["none"]
    assert plots.method_style("x+newaug") == plots.method_style("y+newaug")
    with pytest.raises(ValueError, match="method name"):
        plots.method_style(3)


def test_reliability_title_and_legend_explain_the_bars():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.2, 1.0, size=500)
    correct = (rng.uniform(size=500) < conf**2).astype(float)  # over-confident
    fig = plots.reliability_diagram_from_confidence(conf, correct, title="run")
    ax = fig.axes[0]
    title = ax.get_title()
    assert "run" in title and f"accuracy {correct.mean():.3f}" in title
    assert f"confidence {conf.mean():.3f}" in title and "ECE" in title
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("over-confident" in t for t in labels)
    assert any("under-confident" in t for t in labels)
    # bars are opaque and do not overlap: no blended colour to explain
    assert all(p.get_alpha() in (None, 1.0) for p in ax.patches)


def test_pair_score_heatmap_masks_unscored_pairs_and_counts_in_title():
    scores = np.array([[0.5, -1.0, 0.0], [-1.0, 2.0, 0.3], [0.0, 0.3, 0.0]])
    seen = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
    fig = plots.pair_score_heatmap(scores, seen=seen)
    ax = fig.axes[0]
    image = ax.get_images()[0]
    data = image.get_array()
    assert np.ma.is_masked(data)
    assert np.array_equal(np.ma.getmaskarray(data), ~seen)
    # unscored cells get a hatched grey patch each
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == int((~seen).sum())
    # diverging colour map centred at zero
    vmin, vmax = image.get_clim()
    assert vmin == -vmax and vmax > 0
    assert image.get_cmap().name.startswith("RdBu")
    title = ax.get_title()
    # upper triangle: scored (0,0)=.5 (1,1)=2 (1,2)=.3 helpful; (0,1)=-1 bad
    assert "helpful (>0): 3" in title and "detrimental (<=0): 1" in title
    assert "unscored: 2" in title
    with pytest.raises(ValueError, match="shape"):
        plots.pair_score_heatmap(scores, seen=seen[:2])


def test_reliability_diagram_png(tmp_path):
    rng = np.random.default_rng(1)
    logits = torch.from_numpy(rng.normal(size=(300, 10)).astype(np.float32) * 3)
    labels = torch.from_numpy(rng.integers(0, 10, size=300))
    path = tmp_path / "reliability.png"
    fig = plots.reliability_diagram(logits, labels, n_bins=10, path=path, title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ece = ExpectedCalibrationError(n_bins=10)
    ece.update(logits, labels)
    legend = fig.axes[0].get_legend().get_title().get_text()
    assert legend == f"ECE = {ece.result():.4f}"
    # probabilities are accepted as they are
    fig2 = plots.reliability_diagram(
        logits.softmax(1).numpy(), labels.numpy(), n_bins=10
    )
    assert fig2.axes[0].get_legend().get_title().get_text() == legend
    with pytest.raises(ValueError, match="labels"):
        plots.reliability_diagram(logits, labels[:10])


def test_fitted_limits():
    assert plots.fitted_limits(float("nan"), 1.0) == (0.0, 1.0)
    low, high = plots.fitted_limits(-2.0, 3.0)
    assert low < -2.0 and high > 3.0


def test_old_plots_module_warns_and_gives_the_same_functions():
    import avalanche_mixplugins.plots as old

    for name in plots.__all__:
        with pytest.warns(DeprecationWarning, match=f"experiments.plots.{name}"):
            assert getattr(old, name) is getattr(plots, name)
