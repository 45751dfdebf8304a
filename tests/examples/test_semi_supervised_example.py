"""Smoke test of examples/semi_supervised.py and its results in examples/compare.py."""

from __future__ import annotations

import json

import matplotlib.text
import pytest


def test_presets_and_defaults(script):
    ssl = script("examples/semi_supervised.py")
    default = ssl.parse_args([])
    assert (default.batch_size, default.mu, default.iterations) == (16, 7, 1000)
    assert default.ema == 0.999 and default.ema_warmup  # warm-up fits 1,000 steps
    usb = ssl.parse_args(["--preset", "usb"])
    assert (usb.batch_size, usb.mu, usb.ema, usb.iterations) == (64, 7, 0.999, 2**20)
    assert not usb.ema_warmup
    assert ssl.parse_args(["--preset", "usb", "--batch-size", "32"]).batch_size == 32


def test_validation_split_pool_and_chance_warning(script, tmp_path, capsys):
    ssl = script("examples/semi_supervised.py")
    args = [
        "--dataset", "digits", "--labels", "40", "--iterations", "4",
        "--batch-size", "8", "--mu", "2", "--threads", "1", "--quiet",
        "--output-dir", str(tmp_path), "--algorithm", "fixmatch",
        "--val-size", "100", "--eval-on", "val", "--unlabeled", "200",
        "--calibratemix", "fast", "--calibratemix-warmup", "1",
        "--calibratemix-weight", "2", "--calibratemix-loss", "ce",
        "--ema", "0.999", "--no-ema-warmup",
    ]  # fmt: skip
    with pytest.warns(RuntimeWarning, match="within 0.05 of chance"):
        (res,) = ssl.main(args)
    assert res["near_chance"]
    assert "WARNING: accuracy is within" in capsys.readouterr().out
    assert len(res["final_predictions"]["correct"]) == 100  # the validation split
    cm = res["calibratemix"]
    assert cm["unlabeled_pool"] <= 240 and cm["mixing_iterations"] == 3
    assert cm["apm_updates_per_sample"]["mean"] == pytest.approx(
        3 * 16 / cm["unlabeled_pool"]
    )
    assert cm["split"]["unlabeled_easy_fraction"] == pytest.approx(0.5)


def test_semi_supervised_example_json_and_compare(script, tmp_path):
    ssl = script("examples/semi_supervised.py")
    out = tmp_path / "runs"
    common = [
        "--dataset", "digits", "--labels", "40", "--iterations", "6",
        "--batch-size", "8", "--mu", "2", "--ema", "0.9", "--threads", "1",
        "--quiet", "--output-dir", str(out), "--algorithm", "fixmatch",
    ]  # fmt: skip
    ssl.main([*common, "--calibratemix", "fast", "--calibratemix-warmup", "2"])
    ssl.main([*common, "--calibratemix", "off", "--seeds", "0", "1"])
    files = sorted(out.glob("*.json"))
    assert len(files) == 3
    results = {p.name: json.loads(p.read_text()) for p in files}
    fast = next(r for r in results.values() if "calibratemix" in r["method"])
    assert fast["method"] == "fixmatch+calibratemix-fast"
    assert fast["setting"] == "digits labels=40 iters=6"
    assert fast["calibratemix"]["mixing_iterations"] == 4
    diag = fast["diagnostics"]  # pseudo-label quality, per block of iterations
    assert len(diag["pseudo_label_accuracy"]) == 6 and diag["easy_accuracy"][0] is None
    assert all(
        0 <= a <= 1 for a in diag["easy_accuracy"][2:] + diag["hard_accuracy"][2:]
    )
    for res in results.values():
        assert res["kind"] == "semi_supervised"
        for key in ("config", "seed", "versions", "wall_time_s", "final_predictions"):
            assert key in res, key
        assert res["iterations"] == 6 and res["time_per_iteration_s"] > 0
        assert 0.0 <= res["final_average_accuracy"] <= 1.0
        cal = res["calibration"]
        keys = {
            "ECE_Stream",
            "MCE_Stream",
            "NLL_Stream",
            "Brier_Stream",
            "ECE10_Stream",
        }
        assert keys <= set(cal)
        conf = res["final_predictions"]["confidence"]
        correct = res["final_predictions"]["correct"]
        assert len(conf) == len(correct) == 450  # digits test split
        # the stored predictions are those of the evaluated model
        assert sum(correct) / 450 == pytest.approx(res["final_average_accuracy"])
        assert all(0.0 < c <= 1.0 for c in conf)

    cmp = script("examples/compare.py")
    md, written = cmp.main([*map(str, files), "--output", str(tmp_path / "cmp")])
    assert "### digits labels=40 iters=6" in md
    assert "| fixmatch | 2 |" in md and "| fixmatch+calibratemix-fast | 1 |" in md
    assert " ± " in md and "ECE" in md
    names = {p.name for p in written}
    assert any(n.endswith("_fixmatch_reliability.png") for n in names)
    # the base algorithm and its CalibrateMix run side by side, base first
    (figure,) = cmp.reliability_figures(*next(iter(cmp.load(files).items()))).values()
    titles = [ax.get_title() for ax in figure.axes]
    assert [t.split("\n")[0] for t in titles] == [
        "fixmatch",
        "fixmatch+calibratemix-fast",
    ]
    # each panel's ECE is that run's, once per panel (title only, no legend title)
    for title, method in zip(titles, ("fixmatch", "fixmatch+calibratemix-fast")):
        run = next(r for r in results.values() if r["method"] == method)
        conf, correct = (run["final_predictions"][k] for k in ("confidence", "correct"))
        assert f"accuracy {sum(correct) / len(correct):.3f}" in title
    texts = [t.get_text() for t in figure.findobj(matplotlib.text.Text)]
    assert sum("ECE" in t for t in texts) == 2
    assert (
        len(figure.legends) + sum(ax.get_legend() is not None for ax in figure.axes)
        == 1
    )
    assert all(p.stat().st_size > 1000 for p in written)
    assert (tmp_path / "cmp" / "table.md").read_text() == md
