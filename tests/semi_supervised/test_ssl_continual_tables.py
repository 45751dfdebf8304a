"""The per-experience tables of class-incremental runs, rebuilt from their lines.

The lines come from real runs of examples/semi_supervised.py (digits, a
5-experience stream, a few iterations, two seeds with and without
CalibrateMix); the expected cells are computed here from the lines.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest

from tests.support import load_script

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import ssl_protocol_summary as summary  # noqa: E402


@pytest.mark.filterwarnings("ignore:WARNING. accuracy is within:RuntimeWarning")
def test_stream_tables_hold_the_numbers_of_the_lines(tmp_path):
    ssl = load_script("examples/semi_supervised.py")
    jsonl = tmp_path / "stream.jsonl"
    common = [
        "--dataset", "digits", "--labels", "40", "--iterations", "3",
        "--batch-size", "8", "--mu", "2", "--ema", "0.9", "--threads", "1",
        "--quiet", "--output-dir", str(tmp_path), "--unlabeled", "300",
        "--n-experiences", "5", "--results-jsonl", str(jsonl), "--seeds", "0", "1",
    ]  # fmt: skip
    ssl.main([*common, "--calibratemix", "off"])
    ssl.main([*common, "--calibratemix", "fast", "--calibratemix-warmup", "1"])
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert len(lines) == 4
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- tables: stream.jsonl -->\n<!-- end tables -->\n")
    assert summary.regenerate(doc) is True
    text = doc.read_text()

    base = {x["seed"]: x for x in lines if x["calibratemix"] == "off"}
    fast = sorted(
        (x for x in lines if x["calibratemix"] != "off"), key=lambda x: x["seed"]
    )
    method = fast[0]["method"]
    for i in range(5):
        exps = [x["continual"]["experiences"][i] for x in fast]
        acc = [e["accuracy"] for e in exps]
        ece = [e["ece15"] for e in exps]
        own = [x["continual"]["accuracy_matrix"][i][i] for x in fast]
        d_ece = [
            100 * (x["continual"]["experiences"][i]["ece15"]
                   / base[x["seed"]]["continual"]["experiences"][i]["ece15"] - 1)
            for x in fast
        ]  # fmt: skip
        d_acc = [
            100 * (x["continual"]["experiences"][i]["accuracy"]
                   - base[x["seed"]]["continual"]["experiences"][i]["accuracy"])
            for x in fast
        ]  # fmt: skip
        row = (
            f"| test | {method} | {i + 1} | {2 * (i + 1)} | 2 "
            f"| {statistics.mean(acc):.4f} ± {statistics.pstdev(acc):.4f} "
            f"| {statistics.mean(ece):.4f} ± {statistics.pstdev(ece):.4f} "
            f"| {statistics.mean(own):.4f} ± {statistics.pstdev(own):.4f} "
            f"| {statistics.mean(d_ece):+.1f}% ± {statistics.pstdev(d_ece):.1f}% "
            f"| {statistics.mean(d_acc):+.2f} ± {statistics.pstdev(d_acc):.2f} |"
        )
        assert row in text, row
    forgetting = [x["continual"]["average_forgetting"] for x in fast]
    final_ece = [x["metrics"]["ece15"] for x in fast]
    assert (
        f"| {statistics.mean(final_ece):.4f} ± {statistics.pstdev(final_ece):.4f} "
        f"| {statistics.mean(forgetting):.4f} ± {statistics.pstdev(forgetting):.4f} |"
    ) in text
    # the base rows carry no change against themselves
    assert f"| test | {base[0]['method']} | 5 | 10 | 2 |" in text
    base_row = next(
        r
        for r in text.splitlines()
        if r.startswith(f"| test | {base[0]['method']} | 5 |")
    )
    assert base_row.endswith("|  |  |")
    assert summary.regenerate(doc, check=True) is False
