"""The fidelity report of saved rows counts each pair kind's measured sign.

Recomputed here by plain counting over the committed rows of one stream.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROWS = ROOT / "docs" / "results" / "cl" / "fidelity_mnist5k.json"


@pytest.fixture(scope="module")
def fidelity_report(script):
    return script("benchmarks/gradmix_fidelity_report.py")


def test_kind_shares_count_rises_falls_and_agreement(fidelity_report):
    rows = json.loads(ROWS.read_text())
    shares = fidelity_report.kind_shares(rows)
    assert set(shares) == {"old-old", "old-new", "new-new"}
    for kind, got in shares.items():
        sub = [r for r in rows if r["kind"] == kind]
        rises = sum(r["delta_train"] > 0 for r in sub)
        falls = sum(r["delta_train"] < 0 for r in sub)
        agree = sum(
            (r["plugin"] > 0 and r["delta_train"] < 0)
            or (r["plugin"] < 0 and r["delta_train"] > 0)
            for r in sub
        )
        assert got["pairs"] == len(sub)
        assert got["rises"] == pytest.approx(rises / len(sub))
        assert got["falls"] == pytest.approx(falls / len(sub))
        assert got["agreement"] == pytest.approx(agree / len(sub))


def test_main_prints_each_kind_of_each_file(fidelity_report, capsys):
    fidelity_report.main([str(ROWS)])
    out = capsys.readouterr().out
    for kind in ("old-old", "old-new", "new-new"):
        assert f"{kind}: " in out and "held-out loss rises for" in out
