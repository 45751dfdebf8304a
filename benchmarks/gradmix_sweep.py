"""Grids of class-incremental runs and their tables (run by hand).

Each run trains a small CNN on a 5 x 2 class-incremental stream with a
replay strategy and one mixing plugin (see ``cl_runs.py``) and appends one
JSON line to ``--out``; runs already in the file are skipped, so a grid can
be resumed. ``--table`` prints Markdown tables (mean +- std over seeds of the
final average accuracy and forgetting) from such a file, ``--summary`` one row
per setting, ``--regime`` one table per setting with every method's paired
difference to GradMix. Every std printed here is the population std over seeds
(``numpy.std`` with ``ddof=0``), of the values and of paired differences alike.

Examples::

    # defaults chosen on the validation split (held out of the training data)
    python benchmarks/gradmix_sweep.py --split val --dataset fashion_mnist \\
        --strategies er --augs gradmix --seeds 0 1 2 \\
        --grid '{"weight": [0.5, 1.0], "mix": ["mixup", "cutmix"]}' \\
        --out results/val.jsonl

    # the effect, on the test split
    python benchmarks/gradmix_sweep.py --split test --dataset fashion_mnist \\
        --strategies er er_ace der --seeds 0 1 2 3 4 --out results/test.jsonl
    python benchmarks/gradmix_sweep.py --table results/test.jsonl
    python benchmarks/gradmix_sweep.py --regime results/test.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cl_runs import AUGS, DATASETS, STRATEGIES, RunConfig, run  # noqa: E402

from avalanche_mixplugins.experiments.runs import SEED_STD_DDOF, seed_std  # noqa: E402

STD_DDOF = SEED_STD_DDOF
"""Degrees of freedom of every std printed: 0, the population std over seeds."""


def std(values) -> float:
    """Population std (``ddof=0``) of ``values``, the one convention of the tables."""
    return seed_std(values)


def _key(cfg: dict) -> str:
    return json.dumps(cfg, sort_keys=True)


def _work(cfg_dict: dict) -> dict:
    return run(RunConfig(**cfg_dict))


def configs(args) -> list[dict]:
    grid = json.loads(args.grid)
    names = sorted(grid)
    combos = [
        dict(zip(names, vals)) for vals in itertools.product(*(grid[n] for n in names))
    ]
    combos = combos or [{}]
    out = []
    for ds, strat, aug, mem, ep, lr, seed in itertools.product(
        args.datasets,
        args.strategies,
        args.augs,
        args.mem_sizes,
        args.epochs,
        args.lrs,
        args.seeds,
    ):
        for kw in combos if aug in args.grid_augs else [{}]:
            kw = dict(kw)
            if aug.startswith("gradmix_"):
                kw.pop("mix", None)
            out.append(
                RunConfig(
                    dataset=ds,
                    per_class=args.per_class,
                    split=args.split,
                    strategy=strat,
                    aug=aug,
                    mem_size=mem,
                    epochs=ep,
                    lr=lr,
                    seed=seed,
                    plugin_kwargs={**json.loads(args.plugin), **kw},
                ).__dict__
            )
    return out


def label(r: dict) -> str:
    cfg = r["config"]
    kw = cfg["plugin_kwargs"]
    extra = ",".join(f"{k}={v}" for k, v in sorted(kw.items()))
    return cfg["aug"] + (f"({extra})" if extra else "")


def table(path: str) -> str:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line]
    groups: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        c = r["config"]
        setting = (
            f"{c['dataset']} {c['split']} {c['strategy']} mem={c['mem_size']} "
            f"ep={c['epochs']} lr={c['lr']}"
        )
        groups[setting][label(r)].append(r)
    lines = []
    for setting, methods in groups.items():
        lines += [
            f"\n**{setting}**\n",
            "| method | seeds | final accuracy | forgetting | new-exp accuracy "
            "| min accuracy | stuck exps |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, rs in methods.items():
            acc = np.array([r["final_accuracy"] for r in rs]) * 100
            fgt = np.array([r["forgetting"] for r in rs]) * 100
            new = np.array([np.mean(r["new_experience_accuracy"][1:]) for r in rs])
            stuck = sum(sum(r["stuck_experiences"]) for r in rs)
            lines.append(
                f"| {name} | {len(rs)} | {acc.mean():.1f} ± {std(acc):.1f} "
                f"| {fgt.mean():.1f} ± {std(fgt):.1f} | {100 * new.mean():.1f} "
                f"| {acc.min():.1f} | {stuck} |"
            )
        lines.append("")
        lines.append(verdict(methods))
    return "\n".join(lines)


def verdict(methods: dict) -> str:
    """GradMix at its defaults vs the best baseline (paired seeds) and no augmentation."""
    margin = paired_margin(methods)
    if margin is None:
        return ""
    best, diff, ok = margin
    fg = np.mean([r["forgetting"] for r in methods["gradmix"]]) * 100
    fn = np.mean([r["forgetting"] for r in methods.get("none", [])] or [np.nan]) * 100
    return (
        f"GradMix - best baseline ({best}), paired over {len(diff)} seeds: "
        f"{np.mean(diff):+.1f} ± {std(diff):.1f} points; forgetting "
        f"{fg:.1f} vs none {fn:.1f}; target (>= +1 point, forgetting <= none): "
        f"{'met' if ok else 'missed'}"
    )


BASELINES = ("none", "mixup", "cutmix")
COLUMNS = ("none", "mixup", "cutmix", "gradmix", "gradmix_cutmix")


def _settings(path: str, sizes: bool = False) -> dict:
    """``{setting key: {method label: [runs]}}``, settings in a stable order.

    With ``sizes`` the key ends with the training images per class (``"all"``
    for the full stream), so streams of different sizes are kept apart.
    """
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line]
    groups: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        c = r["config"]
        key = (c["dataset"], c["strategy"], c["mem_size"], c["epochs"], c["lr"])
        if sizes:
            n = c.get("per_class")
            key += ("all" if n is None else f"{n:06d}",)
        groups[key][label(r)].append(r)
    return dict(sorted(groups.items()))


def paired_margin(methods: dict) -> tuple[str, list[float], bool] | None:
    """Best baseline, GradMix - best baseline per shared seed, and the verdict."""
    base = {k: v for k, v in methods.items() if k in BASELINES}
    if "gradmix" not in methods or not base:
        return None
    mean = {k: np.mean([r["final_accuracy"] for r in v]) * 100 for k, v in base.items()}
    best = max(mean, key=mean.get)
    g = {r["config"]["seed"]: r for r in methods["gradmix"]}
    b = {r["config"]["seed"]: r for r in base[best]}
    seeds = sorted(set(g) & set(b))
    diff = [100 * (g[s]["final_accuracy"] - b[s]["final_accuracy"]) for s in seeds]
    fg = np.mean([r["forgetting"] for r in methods["gradmix"]]) * 100
    fn = np.mean([r["forgetting"] for r in base.get("none", [])] or [np.nan]) * 100
    return best, diff, bool(np.mean(diff) >= 1.0 and fg <= fn)


def summary(path: str) -> str:
    """One row per setting: every method's final accuracy, the margin and the verdict."""
    lines = [
        "| stream | strategy | buffer | epochs | seeds | "
        + " | ".join(COLUMNS)
        + " | GradMix - best | forgetting GradMix / none | target |",
        "| --- | --- | ---: | ---: | ---: | "
        + " | ".join("---:" for _ in COLUMNS)
        + " | ---: | ---: | --- |",
    ]
    met = total = 0
    for (ds, strat, mem, ep, _lr), methods in _settings(path).items():
        cells = []
        for name in COLUMNS:
            acc = np.array([r["final_accuracy"] for r in methods.get(name, [])]) * 100
            cells.append(f"{acc.mean():.1f} ± {std(acc):.1f}" if acc.size else "-")
        verdict_ = paired_margin(methods)
        if verdict_ is None:
            continue
        best, diff, ok = verdict_
        total += 1
        met += ok
        fg = np.mean([r["forgetting"] for r in methods["gradmix"]]) * 100
        fn = np.mean([r["forgetting"] for r in methods.get("none", [])] or [np.nan])
        seeds = len(methods["gradmix"])
        lines.append(
            f"| {ds} | {strat} | {mem} | {ep} | {seeds} | "
            + " | ".join(cells)
            + f" | {np.mean(diff):+.1f} ± {std(diff):.1f} ({best}) "
            f"| {fg:.1f} / {100 * fn:.1f} | {'met' if ok else 'missed'} |"
        )
    lines.append("")
    lines.append(f"Target met in {met} of {total} settings.")
    return "\n".join(lines)


RANDOM_MIXING = ("mixup", "cutmix", "switch")
"""Random-pair baselines whose paired difference to ``none`` ``--regime`` reports."""


def _by_seed(runs: list[dict], metric: str = "final_accuracy") -> dict[int, float]:
    """``{seed: metric in percent}`` of one method's runs."""
    return {r["config"]["seed"]: 100 * r[metric] for r in runs}


def paired(a: list[dict], b: list[dict]) -> tuple[list[int], list[float]]:
    """Seeds run by both methods and ``a - b`` of the final accuracy per seed."""
    pa, pb = _by_seed(a), _by_seed(b)
    seeds = sorted(set(pa) & set(pb))
    return seeds, [pa[s] - pb[s] for s in seeds]


def _new_accuracy(r: dict) -> float:
    """Mean accuracy (%) on experiences 2..5 right after training each."""
    return 100 * float(np.mean(r["new_experience_accuracy"][1:]))


def against_none(diff: list[float]) -> str:
    """Verdict of a paired difference to ``none``: outside its own std or level."""
    mean, spread = float(np.mean(diff)), std(diff)
    if mean > 0 and mean > spread:
        return "beats none"
    if mean < 0 and -mean > spread:
        return "below none"
    return "level with none (within the seed spread)"


def _pm(values, signed: bool = False) -> str:
    fmt = "+.1f" if signed else ".1f"
    return f"{np.mean(values):{fmt}} ± {std(values):.1f}"


def regime(path: str) -> str:
    """One table per setting: every method and its paired difference to GradMix.

    Per setting (stream, strategy, buffer, epochs, lr) of the JSONL file at
    ``path``: each method's final average accuracy, forgetting and accuracy on
    each new experience (2..5, right after training it), mean ± population
    std over seeds; GradMix at its defaults (label ``gradmix``, else the first
    label starting with ``gradmix``) minus each other method, paired by seed,
    with the per-seed values; a line per random baseline (Mixup, CutMix, the
    switch) against no augmentation, paired (it beats none when the mean
    difference is positive and larger than its std, see :func:`against_none`);
    and the target: GradMix at least
    1 point above the best baseline (every method whose label does not start
    with ``gradmix``; best by mean), paired, with forgetting at most that
    baseline's, never more than 0.5 point below it and never below ``none``.
    Works for any strategies in the file.
    """
    out = []
    for (ds, strat, mem, ep, lr, n), methods in _settings(path, sizes=True).items():
        names = list(methods)
        ref = "gradmix" if "gradmix" in methods else None
        ref = ref or next((n for n in names if n.startswith("gradmix")), None)
        seeds = sorted({r["config"]["seed"] for rs in methods.values() for r in rs})
        plural = "epoch" if ep == 1 else "epochs"
        out += [
            f"\n**{ds} ({n.lstrip('0')} training images per class), {strat}, "
            f"buffer {mem}, {ep} {plural}, lr {lr}** "
            f"(seeds {' '.join(map(str, seeds))})\n",
            "| method | seeds | final accuracy | forgetting "
            "| new-exp accuracy (exp. 2-5) "
            + (f"| {ref} - method, paired | per seed |" if ref else "|"),
            "| --- | ---: | ---: | ---: | ---: |" + (" ---: | --- |" if ref else ""),
        ]
        for name in names:
            rs = methods[name]
            acc = [100 * r["final_accuracy"] for r in rs]
            fgt = [100 * r["forgetting"] for r in rs]
            new = [_new_accuracy(r) for r in rs]
            row = f"| {name} | {len(rs)} | {_pm(acc)} | {_pm(fgt)} | {_pm(new)} |"
            if ref and name != ref:
                _, diff = paired(methods[ref], rs)
                each = " ".join(f"{d:+.1f}" for d in diff)
                row += f" {_pm(diff, signed=True)} | {each} |"
            elif ref:
                row += " | |"
            out.append(row)
        out.append("")
        none = methods.get("none")
        if none:
            parts = []
            for name in RANDOM_MIXING:
                if name not in methods:
                    continue
                _, diff = paired(methods[name], none)
                wins = sum(d > 0 for d in diff)
                verdict_ = against_none(diff)
                parts.append(
                    f"{name} - none {_pm(diff, signed=True)} "
                    f"({wins} of {len(diff)} seeds ahead): {verdict_}"
                )
            if parts:
                out.append(
                    "Random mixing against none (paired): " + "; ".join(parts) + "."
                )
                out.append("")
        base = {k: v for k, v in methods.items() if not k.startswith("gradmix")}
        if ref and base:
            mean = {
                k: np.mean([r["final_accuracy"] for r in v]) for k, v in base.items()
            }
            best = max(mean, key=mean.get)
            _, diff = paired(methods[ref], base[best])
            fg = np.mean([r["forgetting"] for r in methods[ref]]) * 100
            fb = np.mean([r["forgetting"] for r in base[best]]) * 100
            met = np.mean(diff) >= 1.0 and fg <= fb
            close = np.mean(diff) >= -0.5
            line = (
                f"Target: {ref} - best baseline ({best}) {_pm(diff, signed=True)}, "
                f"forgetting {fg:.1f} vs {fb:.1f}: "
                f"{'met' if met else 'missed'} (>= +1 point, forgetting <= its); "
                f"within 0.5 point of it: {'yes' if close else 'no'}"
            )
            if none:
                _, dn = paired(methods[ref], none)
                line += f"; not below none: {'yes' if np.mean(dn) >= 0 else 'no'}"
            out += [line + ".", ""]
    return "\n".join(out)


def summary_plot(path: str, out_png: str) -> Path:
    """GradMix - best baseline per setting (paired seeds), one bar per setting."""
    from matplotlib.figure import Figure

    settings = [(k, paired_margin(m)) for k, m in _settings(path).items()]
    settings = [(k, v) for k, v in settings if v is not None]
    fig = Figure(figsize=(max(6, 0.45 * len(settings) + 2), 3.8))
    ax = fig.add_subplot(1, 1, 1)
    for i, (_key, (_best, diff, ok)) in enumerate(settings):
        ax.bar(i, np.mean(diff), color="tab:green" if ok else "tab:red", alpha=0.7)
        ax.plot([i] * len(diff), diff, "k.", ms=3)
    ax.axhline(0, color="black", lw=0.8)
    ax.axhline(1, color="gray", lw=0.8, ls="--")
    ax.set_xticks(range(len(settings)))
    ax.set_xticklabels(
        [f"{d[:7]} {s} m{m} e{e}" for (d, s, m, e, _lr), _ in settings],
        rotation=60,
        ha="right",
        fontsize=7,
    )
    ax.set_ylabel("GradMix - best baseline (points)")
    ax.set_title(
        "final accuracy, paired by seed (dots); green: target met "
        "(>= +1 point, forgetting <= none's)",
        fontsize=8,
    )
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def plot(path: str, out_dir: str) -> list[Path]:
    """One figure per setting: accuracy and forgetting per method, with seeds."""
    from matplotlib.figure import Figure

    from avalanche_mixplugins.experiments.plots import method_style

    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line]
    groups: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        c = r["config"]
        key = f"{c['dataset']}_{c['split']}_{c['strategy']}_mem{c['mem_size']}_ep{c['epochs']}"
        groups[key][label(r)].append(r)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for key, methods in groups.items():
        fig = Figure(figsize=(8, 3.2))
        names = list(methods)
        for k, (metric, title) in enumerate(
            (("final_accuracy", "final accuracy (%)"), ("forgetting", "forgetting (%)"))
        ):
            ax = fig.add_subplot(1, 2, k + 1)
            for i, name in enumerate(names):
                aug = name.replace("gradmix_cutmix", "gradmix(cutmix op)")
                style = method_style(f"x+{aug}")
                vals = np.array([r[metric] for r in methods[name]]) * 100
                ax.bar(
                    i,
                    vals.mean(),
                    yerr=std(vals),
                    color=style["color"],
                    hatch="//" if style["linestyle"] != "-" else None,
                    edgecolor="black",
                    capsize=3,
                )
                ax.plot([i] * len(vals), vals, "k.", ms=4)
            lo = min(np.min([r[metric] for r in v]) for v in methods.values()) * 100
            hi = max(np.max([r[metric] for r in v]) for v in methods.values()) * 100
            pad = max(1.0, 0.15 * (hi - lo))
            ax.set_ylim(lo - pad, hi + pad)
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
            ax.set_title(title, fontsize=9)
        fig.suptitle(f"{key} (bars: mean ± std over seeds; dots: seeds)", fontsize=9)
        fig.tight_layout()
        path_png = out / f"{key}.png"
        fig.savefig(path_png, dpi=110)
        written.append(path_png)
    return written


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--datasets", nargs="+", default=["fashion_mnist"], choices=DATASETS)
    p.add_argument(
        "--per-class",
        type=lambda v: None if v == "all" else int(v),
        default=800,
        help='training images per class, or "all"',
    )
    p.add_argument("--split", default="val", choices=("val", "test"))
    p.add_argument("--strategies", nargs="+", default=["er"], choices=STRATEGIES)
    p.add_argument("--augs", nargs="+", default=list(AUGS), choices=AUGS)
    p.add_argument("--mem-sizes", type=int, nargs="+", default=[200])
    p.add_argument("--epochs", type=int, nargs="+", default=[3])
    p.add_argument("--lrs", type=float, nargs="+", default=[0.03])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--plugin", default="{}", help="plugin kwargs (JSON) for all runs")
    p.add_argument(
        "--grid", default="{}", help="GradMix kwargs to sweep, JSON of lists"
    )
    p.add_argument(
        "--grid-augs",
        nargs="+",
        default=["gradmix", "gradmix_mixup", "gradmix_cutmix", "gradmix_auto"],
        choices=AUGS,
        help="the augmentations --grid applies to",
    )
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="results/sweep.jsonl")
    p.add_argument("--table", default=None, help="print the tables of a JSONL file")
    p.add_argument(
        "--plot", default=None, help="with --table: write one PNG per setting here"
    )
    p.add_argument(
        "--summary", default=None, help="print one row per setting of a JSONL file"
    )
    p.add_argument(
        "--summary-plot", default=None, help="with --summary: the margin figure (PNG)"
    )
    p.add_argument(
        "--regime",
        default=None,
        help="print one table per setting with paired differences to GradMix",
    )
    args = p.parse_args(argv)
    if args.regime:
        print(regime(args.regime))
        return
    if args.summary:
        print(summary(args.summary))
        if args.summary_plot:
            print(f"wrote {summary_plot(args.summary, args.summary_plot)}")
        return
    if args.table:
        print(table(args.table))
        if args.plot:
            for path in plot(args.table, args.plot):
                print(f"wrote {path}")
        return
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        done = {
            _key(json.loads(line)["config"])
            for line in out.read_text().splitlines()
            if line
        }
    todo = [c for c in configs(args) if _key(c) not in done]
    print(f"{len(todo)} runs to do ({len(done)} done) -> {out}", flush=True)
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers) as pool, out.open("a") as f:
        for i, r in enumerate(pool.imap_unordered(_work, todo), 1):
            f.write(json.dumps(r) + "\n")
            f.flush()
            print(
                f"[{i}/{len(todo)}] {label(r)} {r['config']['strategy']} "
                f"seed {r['config']['seed']}: acc {r['final_accuracy']:.3f} "
                f"fgt {r['forgetting']:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
