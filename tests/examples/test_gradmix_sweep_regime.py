"""The full-size regime tables are rebuilt from the committed run lines.

The numbers printed by ``gradmix_sweep.py --regime`` are recomputed here from
the JSON lines themselves with :mod:`statistics` (population std, the
convention of the GradMix pages), so a change of the std convention, of the
pairing by seed or of the grouping by strategy makes a test fail.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "docs" / "results" / "cl" / "test_full_er_one_epoch.jsonl"


@pytest.fixture(scope="module")
def sweep(script):
    return script("benchmarks/gradmix_sweep.py")


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x]


def _rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] not in ("method", "---"):
            rows[cells[0]] = cells
    return rows


def _pm(values: list[float]) -> str:
    return f"{statistics.mean(values):.1f} ± {statistics.pstdev(values):.1f}"


def test_every_cell_is_the_population_statistic_of_the_lines(sweep):
    lines = _lines(RUNS)
    rows = _rows(sweep.regime(str(RUNS)))
    by = {}
    for x in lines:
        by.setdefault(x["config"]["aug"], {})[x["config"]["seed"]] = x
    assert set(rows) == set(by) and len(by["gradmix"]) == 3
    g = by["gradmix"]
    for name, runs in by.items():
        seeds = sorted(runs)
        acc = [100 * runs[s]["final_accuracy"] for s in seeds]
        fgt = [100 * runs[s]["forgetting"] for s in seeds]
        new = [
            100 * statistics.mean(runs[s]["new_experience_accuracy"][1:]) for s in seeds
        ]
        cells = rows[name]
        assert cells[1] == str(len(seeds))
        assert cells[2:5] == [_pm(acc), _pm(fgt), _pm(new)]
        if name == "gradmix":
            continue
        diff = [
            100 * (g[s]["final_accuracy"] - runs[s]["final_accuracy"]) for s in seeds
        ]
        assert cells[5] == (
            f"{statistics.mean(diff):+.1f} ± {statistics.pstdev(diff):.1f}"
        )
        assert cells[6].split() == [f"{d:+.1f}" for d in diff]


def test_random_mixing_verdicts_and_target_follow_the_paired_differences(sweep):
    by = {}
    for x in _lines(RUNS):
        by.setdefault(x["config"]["aug"], {})[x["config"]["seed"]] = x
    text = sweep.regime(str(RUNS))
    for name in ("mixup", "cutmix", "switch"):
        diff = [
            100 * (by[name][s]["final_accuracy"] - by["none"][s]["final_accuracy"])
            for s in sorted(by["none"])
        ]
        mean, sd = statistics.mean(diff), statistics.pstdev(diff)
        expected = "beats none" if mean > sd else "level with none"
        head = f"{name} - none {mean:+.1f} ± {sd:.1f}"
        assert head in text
        assert text.split(head, 1)[1].split(";")[0].split(": ")[1].startswith(expected)
    means = {
        k: statistics.mean(r["final_accuracy"] for r in v.values())
        for k, v in by.items()
        if not k.startswith("gradmix")
    }
    best = max(means, key=means.get)
    assert f"best baseline ({best})" in text


def test_any_strategy_and_stream_size_gets_its_own_table(sweep, tmp_path):
    """Lines of other strategies or sizes (the same runs relabelled) are kept apart."""
    out = []
    for strategy, per_class in (("er_ace", None), ("der", None), ("der", 400)):
        for x in _lines(RUNS):
            x = json.loads(json.dumps(x))
            x["config"]["strategy"] = strategy
            x["config"]["per_class"] = per_class
            out.append(json.dumps(x))
    path = tmp_path / "ace_der.jsonl"
    path.write_text("\n".join(out) + "\n")
    text = sweep.regime(str(path))
    assert "(all training images per class), er_ace, buffer 500, 1 epoch" in text
    assert "(all training images per class), der, buffer 500, 1 epoch" in text
    assert "(400 training images per class), der, buffer 500, 1 epoch" in text
    assert text.count("| gradmix | 3 |") == 3 and text.count("Target:") == 3
