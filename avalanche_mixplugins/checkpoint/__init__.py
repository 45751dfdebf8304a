"""Exact checkpoints of Avalanche training runs as plain state.

``avalanche.training.checkpoint.save_checkpoint`` pickles the whole strategy
with dill, which fails with current dependencies (the optimizer cannot be
pickled). :func:`save_checkpoint` stores plain state instead (tensors, lists,
dicts, numbers, strings) with ``torch.save``, so :func:`load_checkpoint`
reads it back with ``torch.load(weights_only=True)``:

* the model's and the optimizer's state dicts, and a learning-rate
  scheduler's;
* the state of every plugin that implements :class:`Stateful`
  (``state_dict()`` / ``load_state_dict()``: the mixing plugins' pair scores
  and generators, CalibrateMix's AUM/APM tables, ...), matched on load by
  position and type;
* replay buffers (``ReplayPlugin``'s storage policy and a strategy's own
  ``storage_policy``: ER-ACE, ER-AML, DER), see :mod:`.buffers`;
* the strategy clock and experience counter;
* the state of a strategy that implements :class:`Stateful` (its running
  statistics, a teacher model, inside an experience its loaders' positions:
  whatever it needs beyond model and optimizer);
* the random states of torch (CPU and CUDA), numpy and Python's ``random``
  (:mod:`.rng`).

Two resume points are exact:

* **between experiences** (any strategy): save after ``strategy.train(exp)``
  returns, load into freshly built objects, continue with experience
  ``state["next_experience"]``;
* **inside an experience** (a strategy implementing
  :class:`ResumableInExperience`): save in ``after_training_iteration``
  (e.g. with :class:`StateCheckpointPlugin`), load, and call
  ``strategy.train`` on the same experience (``state["experience"]``): it
  continues with the next iteration.

Avalanche's own strategies (``Naive`` + ``ReplayPlugin``, ``ER_ACE``,
``ER_AML``, ``DER``, ...) resume between experiences only: their loaders
(``ReplayDataLoader``, the strategies' cycling buffer loaders) cannot be
re-positioned, and ER-ACE / ER-AML update their buffer when an experience
starts, so ``save_checkpoint`` refuses to write inside one of their
experiences (``ValueError``) rather than write a file that would not resume
exactly.

Build the strategy, its plugins and its model exactly as in the saved run
before loading (same classes, sizes and plugin order).

Modules: :mod:`.protocol` (what a strategy or plugin implements),
:mod:`.files` (save / load), :mod:`.buffers` (replay buffers, with the
private Avalanche attributes they must read and why), :mod:`.rng` (random
states), :mod:`.plugin` (:class:`StateCheckpointPlugin`).
"""

from avalanche_mixplugins.checkpoint.buffers import (
    buffer_state_dict,
    load_buffer_state_dict,
)
from avalanche_mixplugins.checkpoint.files import (
    FORMAT_VERSION,
    load_checkpoint,
    save_checkpoint,
)
from avalanche_mixplugins.checkpoint.plugin import (
    CheckpointPlugin,
    StateCheckpointPlugin,
)
from avalanche_mixplugins.checkpoint.protocol import ResumableInExperience, Stateful
from avalanche_mixplugins.checkpoint.rng import rng_state, set_rng_state

__all__ = [
    "FORMAT_VERSION",
    "CheckpointPlugin",
    "ResumableInExperience",
    "StateCheckpointPlugin",
    "Stateful",
    "buffer_state_dict",
    "load_buffer_state_dict",
    "load_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]
