"""The CalibrateMix protocol tables pair each run with the base of its seed."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def summary(script):
    return script("benchmarks/ssl_protocol_summary.py")


def _run(tmp_path, method, algorithm, seed, acc, ece):
    result = {
        "kind": "semi_supervised",
        "method": method,
        "setting": "fashion_mnist labels=40 iters=1000 unlabeled=4000",
        "config": {"algorithm": algorithm},
        "seed": seed,
        "final_average_accuracy": acc,
        "calibration": {"ECE_Stream": ece, "ECE10_Stream": ece},
    }
    path = tmp_path / f"{method}_s{seed}.json"
    path.write_text(json.dumps(result))
    return path


def test_paired_table_by_hand(tmp_path, summary):
    paths = [
        _run(tmp_path, "fixmatch", "fixmatch", 0, 0.60, 0.20),
        _run(tmp_path, "fixmatch", "fixmatch", 1, 0.70, 0.10),
        # seed 0: ECE 0.20 -> 0.12 (-40%) at -0.4 point: at the target
        _run(tmp_path, "fixmatch+cm", "fixmatch", 0, 0.596, 0.12),
        # seed 1: ECE 0.10 -> 0.08 (-20%) at +1 point: not at the target
        _run(tmp_path, "fixmatch+cm", "fixmatch", 1, 0.71, 0.08),
    ]
    text = summary.tables(summary._load(paths))
    row = next(
        line for line in text.splitlines() if line.startswith("| fixmatch+cm | 2 | -")
    )
    cells = [c.strip() for c in row.strip("|").split("|")]
    # mean of -40% and -20%, sample std 14.1; accuracy (-0.4 + 1.0) / 2
    assert cells[2] == "-30.0% ± 14.1"
    assert cells[3] == "+0.30 ± 0.99"
    assert cells[4] == "1 of 2"


def test_runs_without_a_base_are_not_paired(tmp_path, summary):
    paths = [_run(tmp_path, "softmatch+cm", "softmatch", 0, 0.6, 0.1)]
    text = summary.tables(summary._load(paths))
    assert "Paired changes" not in text
