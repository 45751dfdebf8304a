"""Smoke tests of the example scripts and the comparison harness (smallest settings)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_class_incremental_example_and_compare(tmp_path):
    ci = _load("class_incremental")
    out = tmp_path / "runs"
    common = [
        "--benchmark",
        "split_digits",
        "--quiet",
        "--output-dir",
        str(out),
        "--mem-size",
        "100",
        "--epochs",
        "1",
    ]
    ci.main([*common, "--aug", "gradmix", "--seeds", "0", "1"])
    ci.main([*common, "--aug", "none"])
    files = sorted(out.glob("*.json"))
    assert len(files) == 3
    res = json.loads(files[0].read_text())
    for key in (
        "config",
        "seed",
        "versions",
        "accuracy_matrix",
        "final_average_accuracy",
        "average_forgetting",
        "calibration",
        "wall_time_s",
        "time_per_iteration_s",
        "method",
        "setting",
        "final_predictions",
    ):
        assert key in res, key
    assert len(res["accuracy_matrix"]) == 5 and len(res["accuracy_matrix"][0]) == 5
    assert 0.25 < res["final_average_accuracy"] <= 1.0
    assert {"ECE_Stream", "MCE_Stream", "NLL_Stream", "Brier_Stream"} <= set(
        res["calibration"]
    )
    assert len(res["final_predictions"]["confidence"]) == 450  # digits test split
    assert res["gradmix"]["helpful_fraction_per_experience"]

    cmp = _load("compare")
    md, written = cmp.main([*map(str, files), "--output", str(tmp_path / "cmp")])
    assert "| er+gradmix | 2 |" in md and "| er+none | 1 |" in md and " ± " in md
    names = {p.name for p in written}
    assert any(n.endswith("_accuracy_curves.png") for n in names)
    assert any(n.endswith("er_gradmix_pair_scores.png") for n in names)
    assert any(n.endswith("er_none_reliability.png") for n in names)
    assert all(p.stat().st_size > 1000 for p in written)
    assert (tmp_path / "cmp" / "table.md").read_text() == md
