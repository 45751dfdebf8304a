"""The semi-supervised strategy's own state, for exact checkpoints.

A template mixin implementing the checkpoint protocols of
:mod:`avalanche_mixplugins.checkpoint` (``Stateful``: ``state_dict`` /
``load_state_dict``; ``ResumableInExperience``: ``training_position``), so
:func:`~avalanche_mixplugins.checkpoint.save_checkpoint` saves it like any
other stateful part, without knowing semi-supervised learning:

* the pseudo-labeller's statistics (FlexMatch's per-sample table and class
  thresholds, SoftMatch's mean/variance, distribution alignment) and which
  unlabeled dataset they belong to;
* the EMA teacher and its step count, the AMP scaler;
* the next automatic labeled sample id;
* inside an experience trained with ``train_iterations``, the position: the
  iteration, both loaders' positions and the global RNG state.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch.utils.data import Dataset

from ssl_ext.loaders import IterationLoader


class SSLCheckpointState:
    """Template mixin: ``state_dict``, ``load_state_dict``, ``training_position``."""

    def _init_checkpoint_state(self) -> None:
        self._resume_position: dict | None = None
        self._pending_labeler: dict | None = None

    def state_dict(self) -> dict:
        """Statistics of the pseudo-labeller, EMA teacher and AMP scaler, and,
        during a training iteration with ``train_iterations``, the position in
        the experience (see :meth:`training_position`).

        Model and optimizer are not included (``save_checkpoint`` saves them).
        """
        state = {
            "pseudo_labeler": None
            if self.pseudo_labeler is None
            else copy.deepcopy(self.pseudo_labeler.state_dict()),
            "unlabeled_key": self._unlabeled_key(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "ema_steps": self.ema_steps,
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "next_sample_id": self._next_sample_id,
            "position": self.training_position(),
        }
        if state["position"] is not None:
            # the experience is trained again on resume: it takes the same ids
            state["next_sample_id"] = self._exp_first_sample_id
        return state

    def training_position(self) -> dict | None:
        """Where training is inside the current experience, or ``None``.

        Defined while training with ``train_iterations`` (call it after an
        iteration, e.g. from ``after_training_iteration``): the experience,
        iterations done, the labeled and unlabeled loaders' positions (global
        RNG state when their current pass began, batches drawn in it) and the
        global torch RNG state. :meth:`load_state_dict` with it makes the
        next ``train()`` of that experience continue with the next iteration.
        """
        if not (
            self.is_training
            and isinstance(self.dataloader, IterationLoader)
            and self._ulb_iter is not None
        ):
            return None
        return {
            "experience": int(self.experience.current_experience),
            "iteration": self.dataloader.done,
            "labeled": self.dataloader.position(),
            "unlabeled": self._ulb_iter.position(),
            "rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (call after the first experience's setup
        for the EMA, which is created from the model)."""
        if state.get("pseudo_labeler") is not None:
            if isinstance(self.algorithm, str) and self.unlabeled_dataset is None:
                # a named algorithm is built with the first unlabeled dataset:
                # the statistics are loaded then, if they belong to that dataset
                self._pending_labeler = {
                    "state": state["pseudo_labeler"],
                    "key": state.get("unlabeled_key"),
                }
            elif self.pseudo_labeler is None:
                warnings.warn(
                    "no pseudo-labeller yet: its state was not restored", stacklevel=2
                )
            else:
                self.pseudo_labeler.load_state_dict(state["pseudo_labeler"])
        self._resume_position = state.get("position")
        if state.get("ema") is not None:
            if self.ema is None:
                self.ema = self._new_ema()
            self.ema.load_state_dict(state["ema"])
        self.ema_steps = int(state.get("ema_steps", self.ema_steps))
        if state.get("scaler") is not None and self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
        self._next_sample_id = int(state.get("next_sample_id", self._next_sample_id))

    def ssl_state_dict(self) -> dict:
        """Deprecated name of :meth:`state_dict`."""
        warnings.warn(
            "ssl_state_dict() is deprecated: use state_dict()",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.state_dict()

    def load_ssl_state_dict(self, state: dict) -> None:
        """Deprecated name of :meth:`load_state_dict`."""
        warnings.warn(
            "load_ssl_state_dict() is deprecated: use load_state_dict()",
            DeprecationWarning,
            stacklevel=2,
        )
        self.load_state_dict(state)

    # ------------------------------------------------ used by the strategy
    def _unlabeled_key(self) -> int | None:
        """Which unlabeled dataset the pseudo-labeller's statistics belong to:
        the position in a list of datasets, 0 for a single dataset, the
        experience for a callable."""
        source = self.unlabeled
        if isinstance(source, Dataset):
            return 0
        if isinstance(source, list | tuple):
            for i, d in enumerate(source):
                if d is self.unlabeled_dataset:
                    return i
            return None
        return None if self.experience is None else self.experience.current_experience

    def _restore_pending_labeler(self) -> None:
        """Load statistics saved for the unlabeled dataset just built, if any."""
        pending, self._pending_labeler = self._pending_labeler, None
        if pending is not None and pending["key"] == self._unlabeled_key():
            self.pseudo_labeler.load_state_dict(pending["state"])

    def _resume_for(self, experience) -> dict | None:
        """The saved mid-experience position, if it is this experience's."""
        pos = self._resume_position
        if pos is None or experience is None:
            return None
        if pos["experience"] != experience.current_experience:
            return None
        return pos


__all__ = ["SSLCheckpointState"]
