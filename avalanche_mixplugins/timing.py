"""Wall-time measurement of training iterations, as an Avalanche plugin."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch
from avalanche.core import SupervisedPlugin

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate


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
        device = torch.device(getattr(strategy, "device", "cpu"))
        if device.type == "cuda" and self.synchronize is not False:
            torch.cuda.synchronize(device)

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


__all__ = ["IterationTimer"]
