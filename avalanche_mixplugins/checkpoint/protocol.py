"""What a strategy or a plugin implements to have its own state checkpointed.

:func:`~avalanche_mixplugins.checkpoint.save_checkpoint` saves the model,
the optimizer, replay buffers, the clock and the random states of any
Avalanche run. Anything else that must survive a resume is the business of
the object holding it, through two small protocols (structural: implement the
methods, no base class to inherit):

* :class:`Stateful`: ``state_dict()`` / ``load_state_dict(state)``, the
  protocol of ``torch.distributed.checkpoint.stateful.Stateful`` that torch
  optimizers, schedulers and modules follow too. A plugin or a strategy
  implementing it has its state saved and restored (plugins matched by
  position and type). The state must be plain data (tensors, lists, dicts,
  numbers, strings, ``None``) so the file loads with ``weights_only=True``.
* :class:`ResumableInExperience`: a :class:`Stateful` strategy that can also
  stop and resume *inside* an experience. ``training_position()`` tells where
  it is; its ``state_dict()`` holds what it needs to continue there, and
  after ``load_state_dict`` the next ``train()`` of that experience continues
  with the next iteration. A checkpoint written inside an experience of any
  other strategy is refused, rather than written and resumed inexactly.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Stateful(Protocol):
    """An object whose state a checkpoint saves and restores."""

    def state_dict(self) -> dict[str, Any]:
        """The object's state as plain data."""
        ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (into a freshly built object)."""
        ...


@runtime_checkable
class ResumableInExperience(Stateful, Protocol):
    """A strategy that can be checkpointed, and resumed, inside an experience."""

    def training_position(self) -> dict[str, Any] | None:
        """Where training is inside the current experience, or ``None`` when
        the strategy cannot resume from here (e.g. outside an iteration).

        Called after an iteration (from ``after_training_iteration``); the
        dict holds at least ``"experience"`` (its index in the stream) and
        ``"iteration"`` (iterations done in it).
        """
        ...


__all__ = ["ResumableInExperience", "Stateful"]
