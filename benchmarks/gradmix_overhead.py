"""Time per training iteration of ER, ER+Mixup and ER+GradMix (last, full).

All variants run in one process on the example's model (SmallCNN) and data
(split MNIST-5k), trained on the first experience once (untimed) so that the
buffer holds previous classes, then timed on the second experience in
interleaved rounds: round r runs K iterations of every variant, in a shuffled
order, so drifts of the machine hit all variants alike. The table gives the
median iteration time per variant and the ratios GradMix/Mixup and
GradMix/ER, in wall time and in the process's CPU time over the same
iterations (on a machine shared with other jobs the CPU time does not count
the time the process waited for a core, so its ratios vary less from run to
run), and the load average at the start and the end. ``--count-ops``
then trains 5 more iterations of each variant and prints the median number
of ATen operations one iteration dispatches (forward, losses, backward,
optimizer step): a count that does not depend on the machine's load.

    python benchmarks/gradmix_overhead.py --rounds 7 --iterations 20
"""

from __future__ import annotations

import os
import statistics
import time
import warnings

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training import Naive
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
from torch.utils._python_dispatch import TorchDispatchMode

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


class CpuClock(SupervisedPlugin):
    """The process's CPU time of the iterations ``timer`` records (put it
    just before the timer, whose limit ends the experience)."""

    def __init__(self, timer: IterationTimer):
        super().__init__()
        self.timer = timer
        self.times: list[float] = []
        self._t0 = 0.0

    def before_training_iteration(self, strategy, **kwargs):
        self._t0 = time.process_time()

    def after_training_iteration(self, strategy, **kwargs):
        if self.timer.record:
            self.times.append(time.process_time() - self._t0)


class OpCounter(SupervisedPlugin):
    """Number of ATen operations each iteration dispatches, while ``on``."""

    def __init__(self):
        super().__init__()
        self.on = False
        self.counts: list[int] = []
        self._mode = None

    def before_training_iteration(self, strategy, **kwargs):
        if self.on:
            self._mode = _CountOps()
            self._mode.__enter__()

    def after_training_iteration(self, strategy, **kwargs):
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self.counts.append(self._mode.n)
            self._mode = None


class _CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


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
    p.add_argument(
        "--count-ops",
        action="store_true",
        help="also count the ATen operations of one iteration per variant",
    )
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    bench = split_mnist5k(n_experiences=5, seed=0)
    strategies, timers, clocks, counters = {}, {}, {}, {}
    load_start = load_average()
    for name in args.variants:
        torch.manual_seed(0)
        model = SmallCNN(num_classes=10)
        timer = IterationTimer(record=False)
        clock = CpuClock(timer)
        counters[name] = OpCounter()
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
                counters[name],
                clock,
                timer,
            ],
            evaluator=EvaluationPlugin(loggers=[]),
        )
        strategy.train(bench.train_stream[0])
        timer.limit, timer.record = args.iterations, True
        strategy.train(bench.train_stream[1])  # warm-up round, discarded
        timer.times.clear()
        clock.times.clear()
        strategies[name], timers[name], clocks[name] = strategy, timer, clock
    for _, name in interleaved(args.variants, args.rounds):
        strategies[name].train(bench.train_stream[1])
    med = {n: statistics.median(timers[n].times) for n in args.variants}
    cpu = {n: statistics.median(clocks[n].times) for n in args.variants}
    print(
        f"threads={torch.get_num_threads()} batch={args.batch_size}+replay "
        f"rounds={args.rounds} iterations/round={args.iterations} device={args.device}"
    )
    print(f"load average (1, 5, 15 min): start {load_start}, end {load_average()}")
    print("| variant | median ms/iter | median CPU ms/iter | iterations |")
    print("| --- | ---: | ---: | ---: |")
    for n in args.variants:
        print(
            f"| {n} | {1000 * med[n]:.2f} | {1000 * cpu[n]:.2f} "
            f"| {len(timers[n].times)} |"
        )
    for g in ("ER+GradMix(last)", "ER+GradMix(full)"):
        if g in med and "ER+Mixup" in med and "ER" in med:
            print(
                f"{g}: {med[g] / med['ER+Mixup']:.3f}x Mixup, {med[g] / med['ER']:.3f}x ER"
                f" (CPU time: {cpu[g] / cpu['ER+Mixup']:.3f}x Mixup, "
                f"{cpu[g] / cpu['ER']:.3f}x ER)"
            )
    if args.count_ops:
        for name in args.variants:
            counters[name].on, timers[name].limit = True, 5
            strategies[name].train(bench.train_stream[1])
            ops = statistics.median(counters[name].counts)
            print(f"{name}: {ops:.0f} ATen operations per iteration")


if __name__ == "__main__":
    main()
