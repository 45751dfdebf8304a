"""Time per training iteration of a base SSL algorithm, CalibrateMix fast and faithful.

The three variants train the same model class on the same data with the same
batch sizes (labeled ``B``, unlabeled ``mu * B``) in one process, in
interleaved rounds: round ``r`` trains ``K`` iterations of every variant, in
a shuffled order, so drifts of a shared machine hit all variants alike. The
first round is not timed (allocator and thread-pool warm-up). CalibrateMix
has no warm-up here, so every timed iteration mixes. The table gives the
median time of an iteration (``before_training_iteration`` to
``after_training_iteration``: views, forward(s), backward, step) and the
ratios; the targets are ``fast <= 1.15 x base`` (the fast mode's one extra
forward and backward of the ``B`` mixed samples, plus the split and pairing)
and ``fast <= 0.6 x faithful``.

    python benchmarks/calibratemix_overhead.py --rounds 7 --iterations 20

Defaults: Fashion-MNIST (Debian package ``dataset-fashion-mnist``), 40
labels, SmallCNN, B = 16, mu = 7, SoftMatch, one intra-op thread.
"""

from __future__ import annotations

import statistics
import warnings

import torch
from avalanche.training.plugins import EvaluationPlugin
from torch.utils.data import TensorDataset

import ssl_ext
from avalanche_mixplugins.experiments.datasets import load_fashion_mnist_tensors
from avalanche_mixplugins.experiments.runs import add_threads_option, script_parser
from avalanche_mixplugins.experiments.streams import class_incremental_from_tensors
from avalanche_mixplugins.experiments.timing import (
    IterationTimer,
    add_round_options,
    interleaved,
)
from avalanche_mixplugins.models import make_model
from ssl_ext.calibratemix_plugin import CalibrateMixPlugin
from ssl_ext.experiments import add_algorithm_option, add_ssl_batch_options


def build(variant, args, bench, unlabeled):
    torch.manual_seed(0)
    model = make_model(args.model, num_classes=10, in_chans=1)
    timer = IterationTimer(record=False)
    plugins = [timer]
    if variant != "base":
        plugins.insert(0, CalibrateMixPlugin(mode=variant, warmup=0, seed=0))
    strategy = ssl_ext.SemiSupervisedStrategy(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9),
        unlabeled=unlabeled,
        algorithm=args.algorithm,
        mu=args.mu,
        train_mb_size=args.batch_size,
        train_iterations=args.iterations,
        views=ssl_ext.SSLViews(),
        plugins=plugins,
        evaluator=EvaluationPlugin(),
    )
    return strategy, timer


def parser():
    p = script_parser(__doc__)
    add_round_options(p)
    add_ssl_batch_options(p)
    add_algorithm_option(p)
    p.add_argument(
        "--model",
        "--backbone",
        dest="model",
        default="small_cnn",
        help="small_cnn or a timm name, e.g. wrn28_2 (default: %(default)s)",
    )
    add_threads_option(p, 1)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    x_tr, y_tr, x_te, y_te = load_fashion_mnist_tensors()
    lab = torch.cat([torch.nonzero(y_tr == c)[:4, 0] for c in range(10)])
    bench = class_incremental_from_tensors(
        x_tr[lab], y_tr[lab], x_te[:200], y_te[:200], n_experiences=1, seed=0
    )
    unlabeled = TensorDataset(x_tr)
    exp = bench.train_stream[0]

    variants = ["base", "fast", "faithful"]
    runs = {v: build(v, args, bench, unlabeled) for v in variants}
    for r, v in interleaved(variants, args.rounds + 1):
        strategy, timer = runs[v]
        timer.record = r > 0
        strategy.train(exp)
    med = {v: statistics.median(runs[v][1].times) for v in ("base", "fast", "faithful")}
    n = len(runs["base"][1].times)
    print(
        f"{args.algorithm}, {args.model}, B={args.batch_size}, mu={args.mu}, "
        f"threads={args.threads}, {args.rounds} rounds x {args.iterations} iterations "
        f"({n} timed per variant)\n"
    )
    print("| variant | median s/iter | x base |")
    print("| --- | ---: | ---: |")
    for v in ("base", "fast", "faithful"):
        print(f"| {v} | {med[v]:.4f} | {med[v] / med['base']:.2f} |")
    over = med["fast"] / med["base"]
    ratio = med["fast"] / med["faithful"]
    print(
        f"\nfast / base = {over:.2f} (target <= 1.15: "
        f"{'met' if over <= 1.15 else 'missed'}); fast / faithful = {ratio:.2f} "
        f"(target <= 0.6: {'met' if ratio <= 0.6 else 'missed'})"
    )
    return med


if __name__ == "__main__":
    main()
