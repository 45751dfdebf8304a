"""The score-fidelity report of saved per-pair rows (run by hand).

``gradmix_fidelity.py --out FILE`` writes one row per scored pair and seed;
this prints the same report from such files without rerunning, and per pair
kind the share of pairs whose held-out loss rises or falls after a train step
(the numbers quoted in ``docs/gradmix.md``)::

    python benchmarks/gradmix_fidelity_report.py docs/results/cl/fidelity_*.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gradmix_fidelity import agreement, report  # noqa: E402

KINDS = ("old-old", "old-new", "new-new")


def kind_shares(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per pair kind: pairs, share whose held-out loss rises / falls, agreement."""
    out = {}
    for kind in KINDS:
        sub = [r for r in rows if r["kind"] == kind and np.isfinite(r["delta_train"])]
        if not sub:
            continue
        d = np.array([r["delta_train"] for r in sub])
        out[kind] = {
            "pairs": len(sub),
            "rises": float((d > 0).mean()),
            "falls": float((d < 0).mean()),
            "agreement": agreement(sub, "plugin")[0],
        }
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", help="JSON rows of gradmix_fidelity.py --out")
    args = p.parse_args(argv)
    for path in args.files:
        rows = json.loads(Path(path).read_text())
        seeds = sorted({r["seed"] for r in rows})
        print(f"\n## {path}\n")
        report(rows, SimpleNamespace(dataset=Path(path).stem, seeds=seeds))
        for kind, v in kind_shares(rows).items():
            print(
                f"{kind}: {v['pairs']} pairs, held-out loss rises for "
                f"{100 * v['rises']:.1f}% and falls for {100 * v['falls']:.1f}% "
                f"(train step); scores agree {v['agreement']:.2f}"
            )


if __name__ == "__main__":
    main()
