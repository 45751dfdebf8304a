"""Wall-time measurement of training iterations, as an Avalanche plugin."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from avalanche.core import SupervisedPlugin

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate


class IterationTimer(SupervisedPlugin, supports_distributed=True):
    """Record the wall time of every training iteration.

    An iteration runs from ``before_training_iteration`` to
    ``after_training_iteration``: forward, every plugin's loss terms (mixing
    included), backward and optimizer step; data loading is not counted. Put
    the timer last in the plugin list so that it sees the other plugins'
    work. On CUDA, time is taken without a device synchronisation: use it on
    CPU, or read medians over many iterations.

    :param record: record times from the start (``timer.record = False``
        pauses it, e.g. for warm-up experiences).
    :param limit: stop each experience after this many recorded iterations
        (``None``: never), for benchmarks that time a fixed number of steps.
    """

    def __init__(self, *, record: bool = True, limit: int | None = None):
        super().__init__()
        if limit is not None and int(limit) < 1:
            raise ValueError(
                f"limit must be a positive number of iterations, got {limit}"
            )
        self.record = record
        self.limit = None if limit is None else int(limit)
        self.times: list[float] = []
        self._t0 = 0.0
        self._count = 0

    def before_training_exp(self, strategy: SupervisedTemplate, **kwargs):
        self._count = 0

    def before_training_iteration(self, strategy: SupervisedTemplate, **kwargs):
        self._t0 = time.perf_counter()

    def after_training_iteration(self, strategy: SupervisedTemplate, **kwargs):
        if not self.record:
            return
        self.times.append(time.perf_counter() - self._t0)
        self._count += 1
        if self.limit is not None and self._count >= self.limit:
            strategy.stop_training()


__all__ = ["IterationTimer"]
