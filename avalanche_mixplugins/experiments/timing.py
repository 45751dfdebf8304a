"""Timing of training iterations, for the examples and the timing benchmarks.

* :class:`IterationTimer`: the wall time of every training iteration (no
  data loading), as an Avalanche plugin; the examples report its median.
* :class:`Throughput`: iterations per second over a fixed number of
  iterations after a warm-up, data loading included.
* :func:`interleaved` (and its options, :func:`add_round_options`): the
  order in which benchmarks comparing variants in one process train them,
  round after round, so that drifts of a shared machine hit every variant
  alike.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch
from avalanche.core import SupervisedPlugin

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate


def _synchronize(device: torch.device | str) -> None:
    """Wait for the queued work of a CUDA device (no effect on other devices)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class IterationTimer(SupervisedPlugin, supports_distributed=True):
    """Record the wall time of every training iteration.

    An iteration runs from ``before_training_iteration`` to
    ``after_training_iteration``: forward, every plugin's loss terms (mixing
    included), backward and optimizer step; data loading is not counted. Put
    the timer last in the plugin list so that it sees the other plugins'
    work. CUDA runs asynchronously: on a CUDA device the timer synchronises
    the device at both ends of an iteration (``synchronize``), so the time
    is the device's and not only the kernel launches'; this adds two host
    waits per iteration, so leave it off when timing is not wanted.

    :param record: record times from the start (``timer.record = False``
        pauses it, e.g. for warm-up experiences).
    :param limit: stop each experience after this many recorded iterations
        (``None``: never), for benchmarks that time a fixed number of steps.
    :param synchronize: synchronise a CUDA device around each iteration
        (``None``: when ``strategy.device`` is CUDA; no effect on the CPU).
    """

    def __init__(
        self,
        *,
        record: bool = True,
        limit: int | None = None,
        synchronize: bool | None = None,
    ):
        super().__init__()
        if limit is not None and int(limit) < 1:
            raise ValueError(
                f"limit must be a positive number of iterations, got {limit}"
            )
        if synchronize is not None and not isinstance(synchronize, bool):
            raise ValueError(f"synchronize must be a bool or None, got {synchronize!r}")
        self.record = record
        self.limit = None if limit is None else int(limit)
        self.synchronize = synchronize
        self.times: list[float] = []
        self._t0 = 0.0
        self._count = 0

    def before_training_exp(self, strategy: SupervisedTemplate, **kwargs):
        self._count = 0

    def _sync(self, strategy: SupervisedTemplate) -> None:
        if self.synchronize is not False:
            _synchronize(getattr(strategy, "device", "cpu"))

    def before_training_iteration(self, strategy: SupervisedTemplate, **kwargs):
        if self.record:
            self._sync(strategy)
        self._t0 = time.perf_counter()

    def after_training_iteration(self, strategy: SupervisedTemplate, **kwargs):
        if not self.record:
            return
        self._sync(strategy)
        self.times.append(time.perf_counter() - self._t0)
        self._count += 1
        if self.limit is not None and self._count >= self.limit:
            strategy.stop_training()


class Throughput(SupervisedPlugin):
    """Time ``iterations`` training iterations after ``warmup``, then stop.

    Put it last. The clock starts at the end of the warm-up iterations and
    stops at the end of the timed ones, with a device synchronisation at both
    ends, so data loading between iterations is included and queued GPU work
    is not missed.

    :param warmup: iterations before the clock starts.
    :param iterations: timed iterations.
    :param device: the training device.
    """

    def __init__(self, *, warmup: int, iterations: int, device: torch.device):
        super().__init__()
        self.warmup, self.iterations, self.device = warmup, iterations, device
        self.count = 0
        self.start = self.seconds = None

    def after_training_iteration(self, strategy: SupervisedTemplate, **kwargs):
        self.count += 1
        if self.count == self.warmup:
            _synchronize(self.device)
            self.start = time.perf_counter()
        elif self.count == self.warmup + self.iterations:
            _synchronize(self.device)
            self.seconds = time.perf_counter() - self.start
            strategy.stop_training()

    @property
    def per_second(self) -> float:
        """Timed iterations per second."""
        return self.iterations / self.seconds


def interleaved(
    names: Sequence[str], rounds: int, *, seed: int = 0
) -> Iterator[tuple[int, str]]:
    """``(round, name)`` pairs: every name once per round, in a shuffled order.

    The order of each round is a new shuffle (``random.Random(seed)``), so a
    slow spell of the machine does not always fall on the same variant.
    """
    order = list(names)
    rng = random.Random(seed)
    for r in range(rounds):
        rng.shuffle(order)
        for name in order:
            yield r, name


def add_round_options(p: argparse.ArgumentParser) -> None:
    """``--rounds`` and ``--iterations`` of a benchmark that interleaves variants."""
    p.add_argument(
        "--rounds",
        type=int,
        default=7,
        help="interleaved rounds (default: %(default)s)",
    )
    p.add_argument(
        "--iterations",
        type=int,
        default=20,
        help="timed iterations of each variant per round (default: %(default)s)",
    )


__all__ = ["IterationTimer", "Throughput", "add_round_options", "interleaved"]
