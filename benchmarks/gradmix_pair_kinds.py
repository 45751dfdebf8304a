"""What a mixing plugin mixes, per experience (run by hand).

Trains one class-incremental run (see ``cl_runs.py``) and reads the mixing
plugin's last mixed batch after every step (``last_batch``,
``last_weights``, ``last_loss``). Prints, per experience after the first, the
share of the step's samples that entered the mixed loss by kind of pair
(two current samples, a current and a buffer sample, two buffer samples),
and the mean mixed loss (over all steps, and over the first five steps after
the boundary).

    python benchmarks/gradmix_pair_kinds.py --strategy er_ace --aug gradmix
    python benchmarks/gradmix_pair_kinds.py --strategy er_ace --aug mixup
    python benchmarks/gradmix_pair_kinds.py --split test --epochs 1 --seed 3 --strategy er
    python benchmarks/gradmix_pair_kinds.py --epochs 2 --plugin '{"reference": "balanced"}'
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from avalanche.core import SupervisedPlugin

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cl_runs import AUGS, DATASETS, STRATEGIES, RunConfig, run  # noqa: E402

KINDS = ("current-current", "current-buffer", "buffer-buffer")


class MixRecorder(SupervisedPlugin):
    """Per step: samples in the mixed loss by pair kind, and the mixed loss."""

    def __init__(self, mixing):
        super().__init__()
        self.mixing = mixing
        self.steps: dict[int, list[dict]] = defaultdict(list)

    def before_backward(self, strategy, **kwargs):
        batch, w = self.mixing.last_batch, self.mixing.last_weights
        exp = strategy.experience.current_experience
        if batch is None:  # no mixed term this step: its samples count as unmixed
            n = len(self.mixing.training_samples(strategy)[1])
            self.steps[exp].append({"n": n, "loss": 0.0})
            return
        buf = batch.is_buffer
        partner_buf = buf[batch.partner]
        kept = w > 0
        masks = (~buf & ~partner_buf, buf ^ partner_buf, buf & partner_buf)
        step = {k: int((kept & m).sum()) for k, m in zip(KINDS, masks)}
        step["n"] = int(buf.numel())
        step["loss"] = float(self.mixing.last_loss)
        self.steps[exp].append(step)
        # consumed: a step without a mixed term must not read this batch again
        self.mixing.last_batch = None
        self.mixing.last_weights = None


def summary(steps: dict[int, list[dict]]) -> str:
    rows = [
        "| experience | " + " | ".join(KINDS) + " | mixed loss (all steps) "
        "| mixed loss (first 5 steps) |",
        "| ---: |" + " ---: |" * (len(KINDS) + 2),
    ]
    for exp in sorted(steps):
        if exp == 0:
            continue
        st = steps[exp]
        n = sum(s["n"] for s in st) or 1
        shares = " | ".join(f"{sum(s.get(k, 0) for s in st) / n:.2f}" for k in KINDS)
        losses = [s["loss"] for s in st]
        rows.append(
            f"| {exp + 1} | {shares} | {statistics.mean(losses):.2f} "
            f"| {statistics.mean(losses[:5]):.2f} |"
        )
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=DATASETS, default="fashion_mnist")
    p.add_argument("--per-class", type=int, default=400)
    p.add_argument("--split", choices=("val", "test"), default="val")
    p.add_argument("--strategy", choices=STRATEGIES, default="er_ace")
    p.add_argument("--aug", choices=[a for a in AUGS if a != "none"], default="gradmix")
    p.add_argument("--mem-size", type=int, default=200)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plugin", default="{}", help="plugin kwargs (JSON)")
    args = p.parse_args(argv)
    cfg = RunConfig(
        dataset=args.dataset,
        per_class=args.per_class,
        split=args.split,
        strategy=args.strategy,
        aug=args.aug,
        mem_size=args.mem_size,
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
        plugin_kwargs=json.loads(args.plugin),
    )
    recorders = []

    def make(mixing):
        recorders.append(MixRecorder(mixing))
        return recorders[-1]

    result = run(cfg, extra_plugins=[make])
    print(
        f"{args.dataset} {args.split} {args.strategy} {args.aug} seed {args.seed}: "
        f"final accuracy {100 * result['final_accuracy']:.1f}\n"
    )
    print("Share of the step's samples in the mixed loss, by pair kind:\n")
    text = summary(recorders[0].steps)
    print(text)
    return text


if __name__ == "__main__":
    main()
