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
    # one base per seed (accuracy 0.60, ECE 0.20), and per seed the method's
    # (ECE change, accuracy change in points):
    #   s0 (-40%, -0.4): at the target
    #   s1 (-20%, +1.0): ECE not low enough
    #   s2 (-35%, +0.8): at the target
    #   s3 (-45%, -1.1): accuracy lost
    #   s4 (-50%, -2.0): accuracy lost
    method = [(0.596, 0.12), (0.610, 0.16), (0.608, 0.13), (0.589, 0.11), (0.58, 0.10)]
    paths = [_run(tmp_path, "fixmatch", "fixmatch", s, 0.60, 0.20) for s in range(5)]
    paths += [
        _run(tmp_path, "fixmatch+cm", "fixmatch", s, acc, ece)
        for s, (acc, ece) in enumerate(method)
    ]
    text = summary.tables(summary._load(paths))
    row = next(
        line for line in text.splitlines() if line.startswith("| fixmatch+cm | 5 | -")
    )
    cells = [c.strip() for c in row.strip("|").split("|")]
    # ECE: mean of -40, -20, -35, -45, -50 and its population std
    # (sqrt(530 / 5), the convention of every table)
    assert cells[2] == "-38.0% ± 10.3"
    # accuracy: mean -1.7 / 5, population std sqrt(6.432 / 5)
    assert cells[3] == "-0.34 ± 1.13"
    assert cells[4] == "2 of 5"


def test_runs_without_a_base_are_not_paired(tmp_path, summary):
    paths = [_run(tmp_path, "softmatch+cm", "softmatch", 0, 0.6, 0.1)]
    text = summary.tables(summary._load(paths))
    assert "Paired changes" not in text
