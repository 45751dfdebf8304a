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


def test_reference_of_a_variant_is_the_untagged_calibratemix_run(summary):
    ref = summary.reference_method
    assert ref("fixmatch+calibratemix-fast+random") == "fixmatch+calibratemix-fast"
    assert (
        ref("softmatch+calibratemix-faithful+a+b") == "softmatch+calibratemix-faithful"
    )
    assert ref("fixmatch+calibratemix-fast") is None
    assert ref("fixmatch") is None
    assert ref("fixmatch+mixup+tag") is None


def test_variant_table_by_hand(tmp_path, summary):
    # CalibrateMix at its defaults and a variant (tag "random"), per seed:
    #   s0: ECE 0.10 -> 0.12 (+20%), accuracy 0.60 -> 0.61 (+1 point)
    #   s1: ECE 0.20 -> 0.15 (-25%), accuracy 0.70 -> 0.68 (-2 points)
    #   s2: the variant alone (no run at the defaults): not paired
    cm, var = "fixmatch+calibratemix-fast", "fixmatch+calibratemix-fast+random"
    paths = [_run(tmp_path, "fixmatch", "fixmatch", s, 0.5, 0.3) for s in range(3)]
    paths += [_run(tmp_path, cm, "fixmatch", 0, 0.60, 0.10)]
    paths += [_run(tmp_path, cm, "fixmatch", 1, 0.70, 0.20)]
    paths += [_run(tmp_path, var, "fixmatch", 0, 0.61, 0.12)]
    paths += [_run(tmp_path, var, "fixmatch", 1, 0.68, 0.15)]
    paths += [_run(tmp_path, var, "fixmatch", 2, 0.65, 0.11)]
    # a variant whose untagged run is missing gets no row
    paths += [_run(tmp_path, "softmatch+calibratemix-fast+x", "softmatch", 0, 0.6, 0.1)]
    text = summary.tables(summary._load(paths))
    head = "Paired changes against CalibrateMix without the variant"
    assert text.count(head) == 1
    block = text.split(head, 1)[1]
    rows = [line for line in block.splitlines() if line.startswith(f"| {var} |")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    # mean of +20 and -25, population std 22.5; accuracy mean -0.5, std 1.5
    assert cells == [
        var,
        cm,
        "2",
        "-2.5% ± 22.5",
        "-0.50 ± 1.50",
        "s0 +20.0%, s1 -25.0%",
        "s0 +1.00, s1 -2.00",
    ]
    assert "softmatch+calibratemix-fast+x |" not in block


def test_no_variant_table_without_tagged_runs(tmp_path, summary):
    paths = [_run(tmp_path, "fixmatch", "fixmatch", 0, 0.6, 0.2)]
    paths += [_run(tmp_path, "fixmatch+calibratemix-fast", "fixmatch", 0, 0.6, 0.1)]
    text = summary.tables(summary._load(paths))
    assert "without the variant" not in text
