"""Tables of the CalibrateMix protocol from ``examples/semi_supervised.py`` results.

Reads the JSON files of the runs and prints Markdown tables:

* selection (runs evaluated on the validation split, ``--eval-on val``):
  accuracy, ECE and the change against the base algorithm of the same seed;
* test (``--eval-on test``): per method mean +- std over seeds of accuracy,
  ECE with 15 and 10 bins, and, per seed, the ECE change and accuracy change
  against the base algorithm of the same seed (same labeled subset, same
  unlabeled pool, same initialisation);
* variants of CalibrateMix (a ``--tag`` on the run, e.g. an ablation):
  the per-seed change against the untagged CalibrateMix run of the same
  algorithm, mode and seed (the plugin's defaults);
* the APM updates per unlabeled sample after the warm-up, and the split
  diagnostics of the CalibrateMix runs;
* class-incremental streams (``--n-experiences``): per method and
  experience, mean +- std over seeds of the accuracy and ECE on the test
  classes seen so far, the accuracy on the experience's own classes, and
  the per-seed change against the base algorithm; the average forgetting.

    python benchmarks/ssl_protocol_summary.py RUNS/select/*.json RUNS/test/*.json

The inputs may also be JSON-lines files (one line per run, written by the
example's ``--results-jsonl``; ``ssl_ext.experiments.runs``). With
``--regenerate DOC`` the tables of every block of DOC between
``<!-- tables: FILE.jsonl[, FILE.jsonl] -->`` and ``<!-- end tables -->``
(paths relative to DOC) are rebuilt from those files; ``--check`` only
reports whether DOC is up to date (exit status 1 if not)::

    python benchmarks/ssl_protocol_summary.py --regenerate docs/results_ssl.md
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from avalanche_mixplugins.experiments.runs import seed_std

TARGET_ECE = -0.30
"""The relative ECE change a seed must reach (-30%)."""
TARGET_ACC = 0.005
"""The accuracy a seed may lose against its base (half a point)."""


def _from_record(line: dict) -> dict:
    """A JSON line (``ssl_ext.experiments.runs.run_record``) in the layout
    of a per-run result file, as far as the tables read it."""
    m = line["metrics"]
    cm = None
    if line.get("split_diagnostics"):
        d = line["split_diagnostics"]
        cm = {
            "apm_updates_per_sample": d["apm_updates_per_sample"],
            "unlabeled_pool": d["unlabeled_pool"],
            "split": {
                k: v
                for k, v in d.items()
                if k not in ("apm_updates_per_sample", "unlabeled_pool")
            },
        }
    return {
        "kind": line["kind"],
        "method": line["method"],
        "setting": line["setting"],
        "config": line["config"],
        "seed": line["seed"],
        "final_average_accuracy": m["accuracy"],
        "calibration": {"ECE_Stream": m["ece15"], "ECE10_Stream": m["ece10"]},
        "temperature_scaling": m.get("temperature_scaling"),
        "calibratemix": cm,
        "continual": line.get("continual"),
    }


def _read(path) -> list[dict]:
    text = Path(path).read_text()
    if str(path).endswith(".jsonl"):
        return [_from_record(json.loads(x)) for x in text.splitlines() if x.strip()]
    return [json.loads(text)]


def _load(paths):
    runs = []
    for r in (r for p in paths for r in _read(p)):
        if r.get("kind") != "semi_supervised":
            continue
        r["_split"] = "val" if "eval=val" in r["setting"] else "test"
        r["_base"] = r["config"]["algorithm"]
        runs.append(r)
    return runs


def _ece(r, bins=15):
    key = "ECE_Stream" if bins == 15 else "ECE10_Stream"
    return r["calibration"][key]


def _ms(values, fmt="{:.4f}"):
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(seed_std(values))}"


def _pct(x):
    return f"{100 * x:+.1f}%"


def _paired_table(paired) -> str:
    """Mean +- std of the per-seed changes against the base, and the seeds that
    reach the target (ECE at least ``TARGET_ECE`` lower at an accuracy at most
    ``TARGET_ACC`` below the base's)."""
    rows = [
        f"Paired changes against the base of the same seed (target per seed: ECE "
        f"{100 * TARGET_ECE:+.0f}% or lower at accuracy >= base "
        f"{-100 * TARGET_ACC:+.1f} point):\n",
        "| method | seeds | ECE change | accuracy change (points) | seeds at target |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for method, changes, dacc in paired:
        ece = [c for _, c in changes]
        acc = [100 * d for _, d in dacc]
        hits = sum(c <= TARGET_ECE and d >= -100 * TARGET_ACC for c, d in zip(ece, acc))
        spread = f" ± {100 * seed_std(ece):.1f}" if len(ece) > 1 else ""
        aspread = f" ± {seed_std(acc):.2f}" if len(acc) > 1 else ""
        rows.append(
            f"| {method} | {len(ece)} | {100 * statistics.mean(ece):+.1f}%{spread} "
            f"| {statistics.mean(acc):+.2f}{aspread} | {hits} of {len(ece)} |"
        )
    return "\n".join(rows) + "\n"


def reference_method(method: str) -> str | None:
    """The run a tagged CalibrateMix variant is compared with: the method
    name without its tag (``fixmatch+calibratemix-fast+TAG`` ->
    ``fixmatch+calibratemix-fast``); ``None`` for an untagged method."""
    parts = method.split("+")
    if len(parts) < 3 or not parts[1].startswith("calibratemix-"):
        return None
    return "+".join(parts[:2])


def _variant_table(group) -> str:
    """Tagged CalibrateMix variants against the untagged CalibrateMix run of
    the same seed (:func:`reference_method`): relative ECE change and
    accuracy change in points, per seed and mean +- population std."""
    by_name = {(r["method"], r["seed"]): r for r in group}
    by_method = defaultdict(list)
    for r in group:
        ref = reference_method(r["method"])
        other = by_name.get((ref, r["seed"])) if ref else None
        if other is not None:
            by_method[(r["method"], ref)].append((r, other))
    if not by_method:
        return ""
    rows = [
        "Paired changes against CalibrateMix without the variant (the "
        "untagged run of the same algorithm, mode and seed), mean ± "
        "population std over seeds:\n",
        "| method | against | seeds | ECE change | accuracy change (points) "
        "| ECE change per seed | accuracy change per seed (points) |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for (method, ref), pairs in sorted(by_method.items()):
        pairs = sorted(pairs, key=lambda p: p[0]["seed"])
        seeds = [r["seed"] for r, _ in pairs]
        ece = [_ece(r) / _ece(o) - 1 for r, o in pairs]
        acc = [
            100 * (r["final_average_accuracy"] - o["final_average_accuracy"])
            for r, o in pairs
        ]
        spread = f" ± {100 * seed_std(ece):.1f}" if len(ece) > 1 else ""
        aspread = f" ± {seed_std(acc):.2f}" if len(acc) > 1 else ""
        rows.append(
            f"| {method} | {ref} | {len(pairs)} "
            f"| {100 * statistics.mean(ece):+.1f}%{spread} "
            f"| {statistics.mean(acc):+.2f}{aspread} "
            f"| {', '.join(f's{k} {_pct(c)}' for k, c in zip(seeds, ece))} "
            f"| {', '.join(f's{k} {d:+.2f}' for k, d in zip(seeds, acc))} |"
        )
    return "\n".join(rows) + "\n"


def _diagnostics_by_method(cms) -> str:
    """Means over the seeds of each method's split diagnostics."""
    groups = defaultdict(list)
    for r in cms:
        groups[(r["_split"], r["method"])].append(r)
    rows = [
        "### CalibrateMix runs: APM updates and split diagnostics (means over seeds)\n",
        "| split | method | runs | APM updates per sample (mean, min) "
        "| easy / hard / undecided | APM easy / hard | AUM easy / hard | pair cosine |",
        "| --- | --- | ---: | --- | --- | --- | --- | ---: |",
    ]

    def m(rs, key):
        return statistics.mean(r["calibratemix"]["split"][key] for r in rs)

    for (split, method), rs in sorted(groups.items()):
        upd = [r["calibratemix"]["apm_updates_per_sample"] for r in rs]
        rows.append(
            f"| {split} | {method} | {len(rs)} "
            f"| {statistics.mean(u['mean'] for u in upd):.1f}, {min(u['min'] for u in upd)} "
            f"| {m(rs, 'unlabeled_easy_fraction'):.2f} / {m(rs, 'unlabeled_hard_fraction'):.2f}"
            f" / {m(rs, 'unlabeled_undecided_fraction'):.2f} "
            f"| {m(rs, 'unlabeled_easy_apm'):.2f} / {m(rs, 'unlabeled_hard_apm'):.2f} "
            f"| {m(rs, 'labeled_easy_aum'):.2f} / {m(rs, 'labeled_hard_aum'):.2f} "
            f"| {m(rs, 'pair_similarity'):.3f} |"
        )
    return "\n".join(rows) + "\n"


def _temperature_table(runs) -> str:
    """Test split: ECE of each method's model as trained, and with a
    temperature fitted on the labeled samples and on the held-out labeled
    split; relative changes against the base as trained, paired per seed."""
    group = [r for r in runs if r["_split"] == "test" and r.get("temperature_scaling")]
    if not group:
        return ""
    base = {(r["_base"], r["seed"]): r for r in group if r["method"] == r["_base"]}
    by_method = defaultdict(list)
    for r in group:
        by_method[(r["_base"], r["method"])].append(r)
    rows = [
        "Temperature scaling (test split, ECE with 15 bins; change against the "
        "base model as trained, paired per seed, mean ± population std; T: the "
        "fitted temperatures):\n",
        "| method | seeds | ECE as trained | T on labeled | ECE, T on labeled "
        "| T on held-out | ECE, T on held-out |",
        "| --- | ---: | --- | --- | --- | --- | --- |",
    ]

    def cell(values, changes):
        text = _ms(values)
        if changes:
            sd = f" ± {100 * seed_std(changes):.1f}" if len(changes) > 1 else ""
            text += f" ({100 * statistics.mean(changes):+.1f}%{sd})"
        return text

    for (algo, method), rs in sorted(by_method.items()):
        rs = sorted(rs, key=lambda r: r["seed"])
        cols = []
        for key in (None, "labeled", "heldout"):
            vals, ch, temps = [], [], []
            for r in rs:
                t = r["temperature_scaling"]
                if key is None:
                    v = t["ece15_t1"]
                elif key in t:
                    v = t[key]["ece15"]
                    temps.append(t[key]["temperature"])
                else:
                    continue
                vals.append(v)
                b = base.get((algo, r["seed"]))
                if b is not None and not (key is None and r is b):
                    ch.append(v / b["temperature_scaling"]["ece15_t1"] - 1)
            if key is not None:
                cols.append(_ms(temps, "{:.2f}") if temps else "")
            cols.append(cell(vals, ch) if vals else "")
        rows.append(f"| {method} | {len(rs)} | " + " | ".join(cols) + " |")
    return "\n".join(rows) + "\n"


def _continual_tables(runs) -> str:
    """Class-incremental runs: accuracy and ECE (15 bins) on the test classes
    seen after each experience, mean +- population std over seeds, and the change
    against the base algorithm of the same seed (same class order, labels,
    unlabeled pool and initialisation)."""
    group = [r for r in runs if r.get("continual")]
    if not group:
        return ""
    base = {
        (r["_split"], r["_base"], r["seed"]): r
        for r in group
        if r["method"] == r["_base"]
    }
    by_method = defaultdict(list)
    for r in group:
        by_method[(r["_split"], r["_base"], r["method"])].append(r)
    rows = [
        "### Class-incremental stream: after each experience\n",
        "Accuracy and ECE (15 bins) on the test images of the classes seen so "
        "far, after training each experience; own classes: accuracy on the "
        "test images of the experience just trained; changes: paired per seed "
        "against the base algorithm (ECE relative, accuracy in points); mean ± "
        "population std over seeds.\n",
        "| split | method | after experience | classes seen | seeds | accuracy "
        "| ECE (15) | accuracy, own classes | ECE change | accuracy change (points) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    summary = [
        "Whole stream (final: after the last experience, all classes):\n",
        "| split | method | seeds | final accuracy | final ECE (15) "
        "| average forgetting | mean accuracy, own classes |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]

    def spread(values, fmt):
        if len(values) == 1:
            return fmt.format(values[0])
        sd = fmt.format(seed_std(values)).lstrip("+")
        return f"{fmt.format(statistics.mean(values))} ± {sd}"

    for (split, algo, method), rs in sorted(by_method.items()):
        rs = sorted(rs, key=lambda r: r["seed"])
        n_exp = min(r["continual"]["n_experiences"] for r in rs)
        for i in range(n_exp):
            exps = [r["continual"]["experiences"][i] for r in rs]
            own = [r["continual"]["accuracy_matrix"][i][i] for r in rs]
            d_ece, d_acc = [], []
            for r, e in zip(rs, exps):
                b = base.get((split, algo, r["seed"]))
                if b is None or b is r:
                    continue
                be = b["continual"]["experiences"][i]
                d_ece.append(e["ece15"] / be["ece15"] - 1)
                d_acc.append(100 * (e["accuracy"] - be["accuracy"]))
            rows.append(
                f"| {split} | {method} | {i + 1} | {len(exps[0]['seen_classes'])} "
                f"| {len(rs)} | {_ms([e['accuracy'] for e in exps])} "
                f"| {_ms([e['ece15'] for e in exps])} | {_ms(own)} "
                f"| {spread([100 * d for d in d_ece], '{:+.1f}%') if d_ece else ''} "
                f"| {spread(d_acc, '{:+.2f}') if d_acc else ''} |"
            )
        own_mean = [
            statistics.mean(
                r["continual"]["accuracy_matrix"][i][i] for i in range(n_exp)
            )
            for r in rs
        ]
        summary.append(
            f"| {split} | {method} | {len(rs)} "
            f"| {_ms([r['continual']['experiences'][-1]['accuracy'] for r in rs])} "
            f"| {_ms([r['continual']['experiences'][-1]['ece15'] for r in rs])} "
            f"| {_ms([r['continual']['average_forgetting'] for r in rs])} "
            f"| {_ms(own_mean)} |"
        )
    return "\n".join(rows) + "\n\n" + "\n".join(summary) + "\n"


def regenerate(doc: str | Path, *, check: bool = False) -> bool:
    """Rebuild the marked table blocks of ``doc``; return True if it changed
    (with ``check``, the file is left as it is)."""
    doc = Path(doc)
    text = doc.read_text()
    pattern = re.compile(
        r"(<!-- tables: (?P<files>[^>]*?) -->\n)(?P<body>.*?)(<!-- end tables -->)",
        re.S,
    )

    def repl(m):
        files = [doc.parent / f.strip() for f in m.group("files").split(",")]
        body = tables(_load(files)).strip() + "\n"
        return m.group(1) + "\n" + body + "\n" + m.group(4)

    new = pattern.sub(repl, text)
    changed = new != text
    if changed and not check:
        doc.write_text(new)
    return changed


def tables(runs, *, per_run: bool = False) -> str:
    out = []
    for split in ("val", "test"):
        group = [r for r in runs if r["_split"] == split]
        if not group:
            continue
        base = {(r["_base"], r["seed"]): r for r in group if r["method"] == r["_base"]}
        by_method = defaultdict(list)
        for r in group:
            by_method[(r["_base"], r["method"])].append(r)
        paired = []
        out.append(f"### {split} split\n")
        out.append(
            "| method | n | accuracy | ECE (15) | ECE (10) | ECE change per seed "
            "| mean ECE change | accuracy change per seed |"
        )
        out.append("| --- | ---: | ---: | ---: | ---: | --- | ---: | --- |")
        for (algo, method), rs in sorted(by_method.items()):
            rs = sorted(rs, key=lambda r: r["seed"])
            acc = [r["final_average_accuracy"] for r in rs]
            changes, dacc = [], []
            for r in rs:
                b = base.get((algo, r["seed"]))
                if b is None or r is b:
                    continue
                changes.append((r["seed"], _ece(r) / _ece(b) - 1))
                dacc.append(
                    (
                        r["seed"],
                        r["final_average_accuracy"] - b["final_average_accuracy"],
                    )
                )
            out.append(
                f"| {method} | {len(rs)} | {_ms(acc)} | {_ms([_ece(r) for r in rs])} "
                f"| {_ms([_ece(r, 10) for r in rs])} "
                f"| {', '.join(f's{k} {_pct(c)}' for k, c in changes)} "
                f"| {_pct(statistics.mean(c for _, c in changes)) if changes else ''} "
                f"| {', '.join(f's{k} {d:+.4f}' for k, d in dacc)} |"
            )
            if changes:
                paired.append((method, changes, dacc))
        out.append("")
        if paired:
            out.append(_paired_table(paired))
        variants = _variant_table(group)
        if variants:
            out.append(variants)
    ts = _temperature_table(runs)
    if ts:
        out.append(ts)
    stream = _continual_tables(runs)
    if stream:
        out.append(stream)
    cms = [r for r in runs if r.get("calibratemix")]
    if cms and per_run:
        out.append("### CalibrateMix runs: APM updates and split diagnostics\n")
        out.append(
            "| split | method | seed | pool | APM updates per sample (mean, min) "
            "| easy / hard / undecided | APM easy / hard | AUM easy / hard "
            "| pair cosine |"
        )
        out.append("| --- | --- | ---: | ---: | --- | --- | --- | --- | ---: |")
        for r in sorted(cms, key=lambda r: (r["_split"], r["method"], r["seed"])):
            c = r["calibratemix"]
            u = c["apm_updates_per_sample"]
            d = c["split"]
            out.append(
                f"| {r['_split']} | {r['method']} | {r['seed']} | {c['unlabeled_pool']} "
                f"| {u['mean']:.1f}, {u['min']} "
                f"| {d['unlabeled_easy_fraction']:.2f} / {d['unlabeled_hard_fraction']:.2f}"
                f" / {d['unlabeled_undecided_fraction']:.2f} "
                f"| {d['unlabeled_easy_apm']:.2f} / {d['unlabeled_hard_apm']:.2f} "
                f"| {d['labeled_easy_aum']:.2f} / {d['labeled_hard_aum']:.2f} "
                f"| {d['pair_similarity']:.3f} |"
            )
        out.append("")
    elif cms:
        out.append(_diagnostics_by_method(cms))
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("results", nargs="*", help="JSON or JSONL files of the runs")
    p.add_argument(
        "--per-run",
        action="store_true",
        help="one diagnostics row per run instead of the means per method",
    )
    p.add_argument(
        "--regenerate",
        metavar="DOC",
        default=None,
        help="rebuild the marked table blocks of DOC from their JSONL files",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="with --regenerate: exit 1 if DOC is not up to date, change nothing",
    )
    args = p.parse_args(argv)
    if args.regenerate:
        changed = regenerate(args.regenerate, check=args.check)
        print(f"{args.regenerate}: {'out of date' if changed else 'up to date'}")
        if args.check and changed:
            sys.exit(1)
        return changed
    if not args.results:
        p.error("give result files or --regenerate DOC")
    text = tables(_load(args.results), per_run=args.per_run)
    print(text)
    return text


if __name__ == "__main__":
    main()
