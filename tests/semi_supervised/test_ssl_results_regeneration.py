"""The SSL tables are rebuilt from the committed JSON lines of the runs."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import ssl_protocol_summary as summary  # noqa: E402

SAMPLE = Path(__file__).with_name("ssl_results_sample.jsonl")


def test_regenerated_block_holds_the_numbers_of_the_lines(tmp_path):
    lines = [json.loads(x) for x in SAMPLE.read_text().splitlines()]
    (tmp_path / "runs.jsonl").write_text(SAMPLE.read_text())
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Results\n\nText kept.\n\n<!-- tables: runs.jsonl -->\nstale\n"
        "<!-- end tables -->\n\nMore text.\n"
    )
    assert summary.regenerate(doc, check=True) is True  # stale: out of date
    assert doc.read_text().count("stale") == 1  # check changes nothing
    assert summary.regenerate(doc) is True
    text = doc.read_text()
    assert "stale" not in text and "Text kept." in text and "More text." in text
    # every per-seed change, computed here from the lines themselves
    base = {x["seed"]: x for x in lines if x["calibratemix"] == "off"}
    cm = [x for x in lines if x["calibratemix"] != "off"]
    assert len(base) == 2 and len(cm) == 2
    changes, dacc = [], []
    for x in sorted(cm, key=lambda x: x["seed"]):
        b = base[x["seed"]]
        changes.append(x["metrics"]["ece15"] / b["metrics"]["ece15"] - 1)
        dacc.append(100 * (x["metrics"]["accuracy"] - b["metrics"]["accuracy"]))
        assert f"s{x['seed']} {100 * changes[-1]:+.1f}%" in text
    row = (
        f"| {cm[0]['method']} | 2 | {100 * statistics.mean(changes):+.1f}% ± "
        f"{100 * statistics.pstdev(changes):.1f} | {statistics.mean(dacc):+.2f} ± "
        f"{statistics.pstdev(dacc):.2f} |"
    )
    assert row in text
    assert summary.regenerate(doc, check=True) is False  # now up to date


def test_results_doc_is_up_to_date_with_the_committed_lines():
    doc = ROOT / "docs" / "results_ssl.md"
    if "<!-- tables:" not in doc.read_text():
        pytest.fail("docs/results_ssl.md has no generated table block")
    assert summary.regenerate(doc, check=True) is False, (
        "run python benchmarks/ssl_protocol_summary.py --regenerate docs/results_ssl.md"
    )
