"""A plugin that writes :func:`~avalanche_mixplugins.checkpoint.save_checkpoint`
files every few training iterations.

Named :class:`StateCheckpointPlugin` because it writes plain *state* (state
dicts, loadable with ``weights_only=True``) every ``every`` iterations inside
an experience; Avalanche's own
``avalanche.training.plugins.checkpoint.CheckpointPlugin`` pickles the whole
strategy after each experience and reloads it by itself. The previous name,
:class:`CheckpointPlugin`, is kept as a deprecated alias.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from avalanche.core import SupervisedPlugin
from avalanche.distributed import DistributedHelper

from avalanche_mixplugins.checkpoint.files import save_checkpoint
from avalanche_mixplugins.validation import check_positive_int


class StateCheckpointPlugin(SupervisedPlugin, supports_distributed=True):
    """Save a checkpoint every ``every`` training iterations of an experience.

    Needs a strategy that can resume inside an experience
    (:class:`~avalanche_mixplugins.checkpoint.protocol.ResumableInExperience`,
    e.g. one training a fixed number of iterations per experience); other
    strategies resume between experiences: call :func:`save_checkpoint` after
    ``strategy.train(exp)``. Put it after the plugins whose state it saves.
    Under ``torch.distributed`` only the main process writes.

    :param path: file written (overwritten at each save).
    :param every: save after every ``every`` iterations of an experience.
    :param scheduler: a learning-rate scheduler to include.
    """

    def __init__(self, path: str | Path, *, every: int, scheduler: Any | None = None):
        super().__init__()
        self.path = Path(path)
        self.every = check_positive_int("every", every)
        self.scheduler = scheduler
        self.saves = 0

    def after_training_iteration(self, strategy, **kwargs):
        # the clock (last plugin) has not yet counted this iteration
        if (strategy.clock.train_exp_iterations + 1) % self.every:
            return
        if not DistributedHelper.is_main_process:
            return
        save_checkpoint(self.path, strategy, scheduler=self.scheduler)
        self.saves += 1


class CheckpointPlugin(StateCheckpointPlugin):
    """Deprecated name of :class:`StateCheckpointPlugin` (same arguments)."""

    def __init__(self, path: str | Path, *, every: int, scheduler: Any | None = None):
        warnings.warn(
            "avalanche_mixplugins.checkpoint.CheckpointPlugin is deprecated: use "
            "avalanche_mixplugins.checkpoint.StateCheckpointPlugin (the same "
            "plugin; the old name is that of Avalanche's own CheckpointPlugin)",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__(path, every=every, scheduler=scheduler)


__all__ = ["CheckpointPlugin", "StateCheckpointPlugin"]
