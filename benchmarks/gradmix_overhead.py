"""Time per training iteration of ER, ER+Mixup and ER+GradMix (last, full).

All variants run in one process on the example's model (SmallCNN) and data
(split MNIST-5k), trained on the first experience once (untimed) so that the
buffer holds previous classes, then timed on the second experience in
interleaved rounds: round r runs K iterations of every variant, in a shuffled
order, so drifts of the machine hit all variants alike. The table gives the
median iteration time per variant and the ratios GradMix/Mixup and
GradMix/ER.

    python benchmarks/gradmix_overhead.py --rounds 7 --iterations 20
"""

from __future__ import annotations

import statistics
import warnings

import torch
from avalanche.training import Naive
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin

from avalanche_mixplugins import GradMixPlugin, MixupPlugin
from avalanche_mixplugins.experiments.runs import (
    add_batch_size_option,
    add_device_option,
    add_threads_option,
    script_parser,
)
from avalanche_mixplugins.experiments.streams import split_mnist5k
from avalanche_mixplugins.experiments.timing import (
    IterationTimer,
    add_round_options,
    interleaved,
)
from avalanche_mixplugins.models import SmallCNN

VARIANTS = {
    "ER": lambda: None,
    "ER+Mixup": lambda: MixupPlugin(seed=0),
    "ER+GradMix(last)": lambda: GradMixPlugin(seed=0),
    "ER+GradMix(full)": lambda: GradMixPlugin(seed=0, grad_space="full"),
}


def parser():
    p = script_parser(__doc__)
    add_round_options(p)
    add_batch_size_option(p, 32, "minibatch size")
    p.add_argument(
        "--mem-size", type=int, default=500, help="buffer size (default: %(default)s)"
    )
    add_device_option(p, default="cpu")
    p.add_argument(
        "--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS)
    )
    add_threads_option(p, 1)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    bench = split_mnist5k(n_experiences=5, seed=0)
    strategies, timers = {}, {}
    for name in args.variants:
        torch.manual_seed(0)
        model = SmallCNN(num_classes=10)
        timer = IterationTimer(record=False)
        plugin = VARIANTS[name]()
        strategy = Naive(
            model=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
            train_mb_size=args.batch_size,
            train_epochs=1,
            device=args.device,
            plugins=[
                ReplayPlugin(mem_size=args.mem_size),
                *([plugin] if plugin else []),
                timer,
            ],
            evaluator=EvaluationPlugin(loggers=[]),
        )
        strategy.train(bench.train_stream[0])
        timer.limit, timer.record = args.iterations, True
        strategy.train(bench.train_stream[1])  # warm-up round, discarded
        timer.times.clear()
        strategies[name], timers[name] = strategy, timer
    for _, name in interleaved(args.variants, args.rounds):
        strategies[name].train(bench.train_stream[1])
    med = {n: statistics.median(timers[n].times) for n in args.variants}
    print(
        f"threads={torch.get_num_threads()} batch={args.batch_size}+replay "
        f"rounds={args.rounds} iterations/round={args.iterations} device={args.device}"
    )
    print("| variant | median ms/iter | iterations |")
    print("| --- | ---: | ---: |")
    for n in args.variants:
        print(f"| {n} | {1000 * med[n]:.2f} | {len(timers[n].times)} |")
    for g in ("ER+GradMix(last)", "ER+GradMix(full)"):
        if g in med and "ER+Mixup" in med and "ER" in med:
            print(
                f"{g}: {med[g] / med['ER+Mixup']:.3f}x Mixup, {med[g] / med['ER']:.3f}x ER"
            )


if __name__ == "__main__":
    main()
