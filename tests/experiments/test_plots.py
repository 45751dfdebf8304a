"""Behaviour of the plot helpers: what a reader sees, checked on the axes."""

from __future__ import annotations

import matplotlib.text
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


def _blue_bars(ax) -> list:
    return [p for p in ax.patches if to_hex(p.get_facecolor()) == to_hex("tab:blue")]


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
    # no blended colour to explain: opaque fills, or a hatch with no fill
    assert all(p.get_alpha() in (None, 1.0) for p in ax.patches)
    # ECE is said once, in the title (no legend title repeating it)
    texts = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
    assert sum("ECE" in t for t in texts) == 1
    assert not ax.get_legend().get_title().get_text()


def test_reliability_bar_is_the_accuracy_in_every_bin():
    # hand-made bins (10 bins): [0.3, 0.4) under-confident (accuracy 1.0 at
    # confidence 0.35), [0.8, 0.9) over-confident (accuracy 0.25 at 0.85),
    # [0.5, 0.6) calibrated (accuracy 0.5 at 0.55 -> no gap box)
    conf = np.array([0.35] * 4 + [0.85] * 4 + [0.55] * 20)
    correct = np.array([1] * 4 + [1, 0, 0, 0] + [1] * 11 + [0] * 9, dtype=float)
    fig = plots.reliability_diagram_from_confidence(conf, correct, n_bins=10)
    ax = fig.axes[0]
    bars = sorted(_blue_bars(ax), key=lambda p: p.get_x())
    assert [round(p.get_x(), 6) for p in bars] == [0.3, 0.5, 0.8]
    assert [p.get_height() for p in bars] == pytest.approx([1.0, 0.55, 0.25])
    assert all(p.get_y() == 0 for p in bars)
    # the gap boxes span accuracy <-> mean confidence, one per miscalibrated bin
    gaps = sorted((p for p in ax.patches if p.get_hatch()), key=lambda p: p.get_x())
    spans = [(p.get_y(), p.get_y() + p.get_height()) for p in gaps]
    assert spans == [pytest.approx((0.35, 1.0)), pytest.approx((0.25, 0.85))]
    # the legend names the blue bar as the accuracy, and the under-confident
    # box as lying below the bar's top
    legend = {t.get_text() for t in ax.get_legend().get_texts()}
    assert "accuracy in bin (bar top)" in legend
    assert any("under-confident" in t and "below the bar top" in t for t in legend)


def test_reliability_diagrams_side_by_side_one_panel_per_run(tmp_path):
    rng = np.random.default_rng(2)
    conf = rng.uniform(0.5, 1.0, size=300)
    runs = {
        "fixmatch": (conf, (rng.uniform(size=300) < conf - 0.2).astype(float)),
        "fixmatch+calibratemix-fast": (
            conf,
            (rng.uniform(size=300) < conf).astype(float),
        ),
    }
    path = tmp_path / "side.png"
    fig = plots.reliability_diagrams_side_by_side(runs, path=path, title="setting")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(fig.axes) == 2
    assert [ax.get_title().split("\n")[0] for ax in fig.axes] == list(runs)
    for ax, (_, k) in zip(fig.axes, runs.values()):
        assert f"accuracy {k.mean():.3f}" in ax.get_title()
    # one legend, under the first panel
    assert [ax.get_legend() is not None for ax in fig.axes] == [True, False]
    assert fig.get_suptitle() == "setting"
    with pytest.raises(ValueError, match="at least one run"):
        plots.reliability_diagrams_side_by_side({})


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
    title = fig.axes[0].get_title()
    assert f"ECE {ece.result():.3f} (10 bins, n=300)" in title
    # probabilities are accepted as they are
    fig2 = plots.reliability_diagram(
        logits.softmax(1).numpy(), labels.numpy(), n_bins=10
    )
    assert fig2.axes[0].get_title().split("\n")[1:] == title.split("\n")[1:]
    with pytest.raises(ValueError, match="labels"):
        plots.reliability_diagram(logits, labels[:10])


def test_fitted_limits():
    assert plots.fitted_limits(float("nan"), 1.0) == (0.0, 1.0)
    low, high = plots.fitted_limits(-2.0, 3.0)
    assert low < -2.0 and high > 3.0
