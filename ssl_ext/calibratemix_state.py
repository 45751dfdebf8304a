"""CalibrateMix's state across experiences and checkpoints.

A mixin of :class:`~ssl_ext.calibratemix_plugin.CalibrateMixPlugin`, which
keeps the per-iteration wiring; this part keeps what outlives an iteration:

* :meth:`CalibrateMixState._prepare_tables`, at the start of every
  experience: the AUM table (:class:`~ssl_ext.dynamics.AUMTracker`, by
  labeled sample id) grows to the ids seen so far; the APM table
  (:class:`~ssl_ext.dynamics.APMTracker`, by unlabeled index) is made anew
  for a new unlabeled dataset, which restarts the warm-up count, and kept
  otherwise (also a table restored from a checkpoint, for a dataset of its
  size);
* :meth:`~CalibrateMixState.state_dict` / :meth:`~CalibrateMixState.load_state_dict`:
  the ``Stateful`` protocol of :mod:`avalanche_mixplugins.checkpoint`, so a
  checkpoint saves the tables, the iteration count, the generator and the
  running diagnostics of the current experience.
"""

from __future__ import annotations

import torch

from ssl_ext.calibratemix_diagnostics import SplitDiagnostics
from ssl_ext.dynamics import APMTracker, AUMTracker
from ssl_ext.sample_ids import SAMPLE_ID


class CalibrateMixState:
    """Plugin mixin: the AUM / APM tables per experience, ``state_dict``,
    ``load_state_dict``."""

    def _prepare_tables(self, strategy) -> None:
        """Size the AUM table to the labeled ids and match the APM table to
        the strategy's unlabeled dataset, both on the strategy's device."""
        device = strategy.device
        ids = getattr(strategy.adapted_dataset, SAMPLE_ID, None)
        num_labeled = (
            1 + max((int(i) for i in ids), default=0) if ids is not None else 1
        )
        if self.aum is None:
            self.aum = AUMTracker(num_samples=num_labeled, device=device)
        else:
            self.aum.to(device).grow(num_labeled)
        unlabeled = strategy.unlabeled_dataset
        if unlabeled is not self._unlabeled:
            # a table restored by load_state_dict is kept for a dataset of its size
            restored = (
                self.apm is not None
                and self._unlabeled is None
                and self.apm.num_samples == len(unlabeled)
            )
            if not restored:
                self.apm = APMTracker(
                    num_samples=len(unlabeled),
                    delta=self.apm_delta,
                    dtype=self.apm_dtype,
                    device=device,
                )
                self.iteration = 0
            self._unlabeled = unlabeled
        self.apm.to(device)

    def state_dict(self) -> dict:
        """Trackers, iteration counter, generator state and the running
        diagnostics of the current experience."""
        return {
            "aum": None if self.aum is None else self.aum.state_dict(),
            "apm": None if self.apm is None else self.apm.state_dict(),
            "iteration": self.iteration,
            "warmup_iterations": self.warmup_iterations,
            "generator": None if self.generator is None else self.generator.get_state(),
            "diagnostics": None
            if self._split_sums.sums is None
            else self._split_sums.sums.cpu().clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (the unlabeled dataset must be the same:
        it is matched by size at the next experience)."""
        unknown = set(state) - {
            "aum",
            "apm",
            "iteration",
            "warmup_iterations",
            "generator",
            "diagnostics",
        }
        if unknown:
            raise ValueError(f"unexpected keys in state dict: {sorted(unknown)}")
        if state.get("aum") is not None:
            n = state["aum"]["count"].shape[0]
            self.aum = AUMTracker(num_samples=n)
            self.aum.load_state_dict(state["aum"])
        if state.get("apm") is not None:
            n = state["apm"]["count"].shape[0]
            self.apm = APMTracker(
                num_samples=n, delta=self.apm_delta, dtype=self.apm_dtype
            )
            self.apm.load_state_dict(state["apm"])
        self.iteration = int(state.get("iteration", 0))
        self.warmup_iterations = int(state.get("warmup_iterations", 0))
        if state.get("generator") is not None:
            if self.generator is None:
                self.generator = torch.Generator()
            self.generator.set_state(state["generator"])
        sums = state.get("diagnostics")
        self._split_sums = SplitDiagnostics()
        self._split_sums.sums = None if sums is None else sums.clone()
        self._resumed = sums is not None


__all__ = ["CalibrateMixState"]
