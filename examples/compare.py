"""Turn JSON result files of the examples into a Markdown table and PNG plots.

    python examples/compare.py results/*.json --output docs/results

Results are grouped by setting (stream, buffer, label budget, ...) and by
method; each table cell is mean +- std over seeds; a note under each table
says what each time column measures, beside the runs' thread count (``train s/iter``: one training
iteration, no data loading or evaluation; ``wall s``: the whole run with
evaluation). Plots per setting:
accuracy after each experience per method (class-incremental runs), the
accuracy matrix of each method (first seed), GradMix's class-pair scores, and
the reliability diagrams of each base method beside its augmented variants
(``fixmatch`` beside ``fixmatch+calibratemix-fast``, ``er+none`` beside
``er+gradmix``; first seed).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from avalanche_mixplugins.experiments.plots import (
    accuracy_curves,
    accuracy_matrix_heatmap,
    fitted_limits,
    pair_score_heatmap,
    reliability_diagrams_side_by_side,
)
from avalanche_mixplugins.experiments.runs import script_parser, seed_std

COLUMNS = [
    ("final_average_accuracy", "accuracy"),
    ("average_forgetting", "forgetting"),
    ("calibration.ECE", "ECE"),
    ("calibration.MCE", "MCE"),
    ("calibration.NLL", "NLL"),
    ("calibration.Brier", "Brier"),
    ("config.threads", "threads"),
    ("time_per_iteration_s", "train s/iter"),
    ("train_time_s", "train s"),
    ("wall_time_s", "wall s"),
]

TIME_NOTES = {
    "threads": "torch intra-op threads of the run (--threads); times depend on it "
    "and on the machine's load",
    "train s/iter": "median wall time of one training iteration, from "
    "before_training_iteration to after_training_iteration (forward, every "
    "plugin's loss terms, backward, optimizer step; on CUDA the device is "
    "synchronised at both ends); data loading and evaluation are not included",
    "train s": "wall time of strategy.train() for the whole run: training "
    "iterations, data loading, replay-buffer updates; no evaluation",
    "wall s": "wall time of the whole run: training, data loading and every "
    "evaluation (class-incremental runs evaluate after each experience); "
    "not the model or data set-up",
}
"""What each time column measures; printed under every table that has it."""


def _get(result: dict, key: str):
    cur = result
    for part in key.split("."):
        if not isinstance(cur, dict):
            return None
        if part in cur:
            cur = cur[part]
            continue
        # calibration keys carry a suffix (ECE_Stream, ...)
        match = [k for k in cur if k.split("_")[0] == part]
        if not match:
            return None
        cur = cur[match[0]]
    return cur if isinstance(cur, (int, float)) else None


def _cell(values: list[float]) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "-"
    mean = float(np.mean(values))
    if len(values) == 1:
        return f"{mean:.4f}"
    return f"{mean:.4f} ± {seed_std(values):.4f}"


def _counts(values: list) -> str:
    """The distinct whole numbers among ``values`` (``"1"``, ``"1, 4"``)."""
    found = sorted({int(v) for v in values if v is not None})
    return ", ".join(map(str, found)) if found else "-"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def load(paths: list[Path]) -> dict[str, dict[str, list[dict]]]:
    groups: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for path in paths:
        result = json.loads(Path(path).read_text())
        if "method" not in result or "setting" not in result:
            raise ValueError(
                f"{path} is not a result file of the examples (no method/setting)"
            )
        groups[result["setting"]][result["method"]].append(result)
    return groups


def table(groups) -> str:
    lines = []
    for setting, methods in groups.items():
        present = [
            (k, name)
            for k, name in COLUMNS
            if any(_get(r, k) is not None for runs in methods.values() for r in runs)
        ]
        if not any(name in TIME_NOTES and name != "threads" for _, name in present):
            # the thread count explains time columns only
            present = [(k, name) for k, name in present if name != "threads"]
        lines.append(f"### {setting}\n")
        lines.append("| method | seeds | " + " | ".join(n for _, n in present) + " |")
        lines.append("| --- | ---: | " + " | ".join("---:" for _ in present) + " |")
        for method, runs in methods.items():
            cells = [
                _counts([_get(r, k) for r in runs])
                if name == "threads"
                else _cell([_get(r, k) for r in runs])
                for k, name in present
            ]
            lines.append(f"| {method} | {len(runs)} | " + " | ".join(cells) + " |")
        lines.append("")
        for _, name in present:
            if name in TIME_NOTES:
                lines.append(f"- {name}: {TIME_NOTES[name]}.")
        if any(name in TIME_NOTES for _, name in present):
            lines.append("")
    return "\n".join(lines)


def _band(curve, pick) -> float:
    mean, std = curve
    lo = mean if std is None else mean - std
    hi = mean if std is None else mean + std
    values = np.asarray(lo if pick is min else hi, dtype=float)
    values = values[np.isfinite(values)]
    if not values.size:
        return np.inf if pick is min else -np.inf
    return float(pick(values))


def plots(groups, out: Path) -> list[Path]:
    written = []
    for setting, methods in groups.items():
        slug = _slug(setting)
        curves = {}
        for method, runs in methods.items():
            seq = [
                r["average_accuracy_seen"]
                for r in runs
                if r.get("average_accuracy_seen")
            ]
            if seq:
                arr = np.asarray(seq, dtype=float)
                curves[method] = (arr.mean(0), arr.std(0) if len(seq) > 1 else None)
        if curves:
            # one panel per base strategy ("er+mixup" -> "er"), so lines stay readable
            panels: dict[str, dict] = defaultdict(dict)
            for method, curve in curves.items():
                panels[method.split("+")[0]][method] = curve
            fig = Figure(figsize=(4.2 * len(panels), 3.8))
            axes = fig.subplots(1, len(panels), squeeze=False)[0]
            # one y-range fitted to every panel, so panels compare at a glance
            low = min(_band(c, min) for c in curves.values())
            high = max(_band(c, max) for c in curves.values())
            ylim = fitted_limits(low, high)
            for ax, (base, group) in zip(axes, sorted(panels.items())):
                accuracy_curves(group, ax=ax, title=base, ylim=ylim)
            fig.suptitle(setting)
            path = out / f"{slug}_accuracy_curves.png"
            fig.savefig(path, dpi=120, bbox_inches="tight")
            written.append(path)
        for method, runs in methods.items():
            first = runs[0]
            mslug = f"{slug}_{_slug(method)}"
            if first.get("accuracy_matrix"):
                path = out / f"{mslug}_accuracy_matrix.png"
                accuracy_matrix_heatmap(
                    first["accuracy_matrix"], path=path, title=method
                )
                written.append(path)
            if first.get("gradmix"):
                path = out / f"{mslug}_pair_scores.png"
                pair_score_heatmap(
                    first["gradmix"]["pair_scores"],
                    seen=first["gradmix"]["scored_pairs"],
                    path=path,
                    title=f"{method}: class-pair scores",
                )
                written.append(path)
        for base, fig in reliability_figures(setting, methods).items():
            path = out / f"{slug}_{_slug(base)}_reliability.png"
            fig.savefig(path, dpi=120, bbox_inches="tight")
            written.append(path)
    return written


def reliability_figures(setting: str, methods: dict[str, list[dict]]) -> dict:
    """``{base: Figure}``: the reliability diagrams of one setting, side by side.

    Methods are grouped by their base (the name before the first ``+``:
    ``"fixmatch"`` and ``"fixmatch+calibratemix-fast"``, or ``"er+none"`` and
    ``"er+gradmix"``); each group gets one figure with a panel per method
    (first seed), the method without augmentation first, so the effect of
    CalibrateMix (or of a mixing plugin) on calibration reads left to right.
    """
    groups: dict[str, dict[str, tuple]] = defaultdict(dict)
    for method, runs in methods.items():
        preds = runs[0].get("final_predictions")
        if preds and preds.get("confidence"):
            groups[method.split("+")[0]][method] = (
                preds["confidence"],
                preds["correct"],
            )
    figures = {}
    for base, panels in groups.items():
        plain = (base, f"{base}+none")
        order = sorted(panels, key=lambda m: (m not in plain, list(panels).index(m)))
        figures[base] = reliability_diagrams_side_by_side(
            {m: panels[m] for m in order}, title=f"{setting}: reliability"
        )
    return figures


def parser():
    p = script_parser(__doc__)
    p.add_argument(
        "results",
        nargs="+",
        type=Path,
        help="JSON result files written by the examples",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=Path("comparison"),
        help="directory for table.md and the PNGs (default: %(default)s)",
    )
    return p


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    groups = load(args.results)
    args.output.mkdir(parents=True, exist_ok=True)
    md = table(groups)
    (args.output / "table.md").write_text(md)
    written = plots(groups, args.output)
    print(md)
    print(f"wrote {args.output / 'table.md'} and {len(written)} plots to {args.output}")
    return md, written


if __name__ == "__main__":
    main()
