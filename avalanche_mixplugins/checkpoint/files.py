"""Write and read a checkpoint file: :func:`save_checkpoint`, :func:`load_checkpoint`.

The file is a ``torch.save`` of plain state (format :data:`FORMAT_VERSION`):
``model``, ``optimizer``, ``scheduler``, ``plugins`` (one entry per stateful
plugin: its type, its ``state_dict()``, a ``ReplayPlugin``'s buffer),
``strategy_buffer`` (a strategy's own ``storage_policy``), ``clock``,
``in_iteration``, ``strategy`` (the ``state_dict()`` of a
:class:`~avalanche_mixplugins.checkpoint.protocol.Stateful` strategy),
``position`` (experience and iteration when saved inside an experience),
``rng`` and ``extra``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
from avalanche.training.plugins.clock import Clock
from avalanche.training.storage_policy import ExemplarsBuffer

from avalanche_mixplugins.checkpoint.buffers import (
    buffer_state_dict,
    load_buffer_state_dict,
)
from avalanche_mixplugins.checkpoint.protocol import ResumableInExperience, Stateful
from avalanche_mixplugins.checkpoint.rng import rng_state, set_rng_state

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate

FORMAT_VERSION = 3
"""Version of the checkpoint layout written by :func:`save_checkpoint` (3: the
strategy's state under ``strategy``, the position under ``position``; 2:
buffer samples keep their structure, DER's buffer with logits; 1 and 2 are
still read)."""
_READABLE_FORMATS = (1, 2, 3)

_CLOCK_FIELDS = (
    "train_iterations",
    "train_exp_counter",
    "train_exp_epochs",
    "train_exp_iterations",
    "train_epoch_iterations",
    "total_iterations",
)


# -------------------------------------------------------------------- plugins
def _stateful_plugins(strategy, plugins) -> list:
    """Plugins whose state is saved, in order (the clock and evaluator apart)."""
    if plugins is None:
        plugins = getattr(strategy, "plugins", [])
    return [
        p
        for p in plugins
        if not isinstance(p, Clock | EvaluationPlugin)
        and (isinstance(p, Stateful) or isinstance(p, ReplayPlugin))
    ]


def _plugin_state(plugin) -> dict:
    state: dict[str, Any] = {"type": type(plugin).__name__}
    if isinstance(plugin, Stateful):
        state["state"] = plugin.state_dict()
    if isinstance(plugin, ReplayPlugin):
        state["buffer"] = buffer_state_dict(plugin.storage_policy)
    return state


def _load_plugin_state(plugin, state: dict, dataset_like) -> None:
    if state["type"] != type(plugin).__name__:
        raise ValueError(
            f"checkpoint plugin {state['type']} does not match {type(plugin).__name__}"
            ": build the plugins in the same order as in the saved run"
        )
    if "state" in state:
        plugin.load_state_dict(state["state"])
    if "buffer" in state:
        load_buffer_state_dict(
            plugin.storage_policy, state["buffer"], dataset_like=dataset_like
        )


# ------------------------------------------------------------------ strategy
def _position(strategy) -> dict | None:
    """Experience and iteration of a strategy that can resume where it is."""
    if not isinstance(strategy, ResumableInExperience):
        return None
    position = strategy.training_position()
    if position is None:
        return None
    return {
        "experience": int(position["experience"]),
        "iteration": int(position["iteration"]),
    }


def _upgrade(state: dict) -> dict:
    """A format-1 or -2 file in the current layout: the strategy state was saved
    under ``ssl``, with the position inside it."""
    if state["format"] < 3:
        strategy_state = state.pop("ssl", None)
        position = None if strategy_state is None else strategy_state.get("position")
        state["strategy"] = strategy_state
        state["position"] = (
            None
            if position is None
            else {
                "experience": int(position["experience"]),
                "iteration": int(position["iteration"]),
            }
        )
    return state


# ------------------------------------------------------------------ save/load
def save_checkpoint(
    path: str | Path,
    strategy: SupervisedTemplate,
    *,
    plugins: Sequence[SupervisedPlugin] | None = None,
    scheduler: Any | None = None,
    extra: dict | None = None,
) -> None:
    """Save everything needed to resume ``strategy`` exactly, as plain state.

    Call it between experiences (after ``strategy.train(exp)``), or, for a
    strategy that can resume inside an experience
    (:class:`~avalanche_mixplugins.checkpoint.protocol.ResumableInExperience`),
    from a plugin's ``after_training_iteration`` (see
    :class:`~avalanche_mixplugins.checkpoint.plugin.StateCheckpointPlugin`).

    :param path: file to write (``torch.save``; parent directories are made).
    :param strategy: the Avalanche strategy.
    :param plugins: plugins whose state to save; default every plugin of the
        strategy. Those with ``state_dict()`` and ``load_state_dict()``
        (:class:`~avalanche_mixplugins.checkpoint.protocol.Stateful`) and
        every ``ReplayPlugin`` count.
    :param scheduler: a learning-rate scheduler (anything with ``state_dict``).
    :param extra: plain data of your own, returned by :func:`load_checkpoint`.
    :raises ValueError: if called inside an experience of a strategy that
        cannot resume there, or a buffer cannot be saved.
    """
    # inside a training iteration (train() resets mbatch when it returns)
    in_iteration = bool(strategy.is_training) and strategy.mbatch is not None
    position = _position(strategy)
    if in_iteration and position is None:
        raise ValueError(
            "a checkpoint inside an experience needs a strategy that can resume "
            "there (one whose training_position() says where it is, see "
            "avalanche_mixplugins.checkpoint.ResumableInExperience; saved from "
            "after_training_iteration); for other strategies save between "
            "experiences, after strategy.train(exp)"
        )
    state = {
        "format": FORMAT_VERSION,
        "model": strategy.model.state_dict(),
        "optimizer": strategy.optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "plugins": [_plugin_state(p) for p in _stateful_plugins(strategy, plugins)],
        "strategy_buffer": None,
        "clock": {f: int(getattr(strategy.clock, f)) for f in _CLOCK_FIELDS},
        "in_iteration": in_iteration,
        "strategy": strategy.state_dict() if isinstance(strategy, Stateful) else None,
        "position": position if in_iteration else None,
        "rng": rng_state(),
        "extra": extra,
    }
    own = getattr(strategy, "storage_policy", None)
    if isinstance(own, ExemplarsBuffer):
        state["strategy_buffer"] = buffer_state_dict(own)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(
    path: str | Path,
    strategy: SupervisedTemplate,
    *,
    plugins: Sequence[SupervisedPlugin] | None = None,
    scheduler: Any | None = None,
    dataset_like=None,
    map_location: str | torch.device = "cpu",
) -> dict:
    """Restore a :func:`save_checkpoint` file into freshly built objects.

    :param path: the checkpoint file.
    :param strategy: a strategy built exactly as in the saved run.
    :param plugins: the plugins matching those saved (default: the
        strategy's), in the same order.
    :param scheduler: the learning-rate scheduler, if one was saved.
    :param dataset_like: a dataset of the stream (e.g.
        ``benchmark.train_stream[0].dataset``) whose transform groups the
        rebuilt replay buffer gets; needed when the stream has transforms.
    :param map_location: where tensors are loaded.
    :return: a dict with ``next_experience`` (index of the first experience
        not finished), ``experience`` (the experience to call ``train`` on
        again when saved inside one, else ``None``), ``iteration`` (iterations
        done in it) and ``extra``.
    """
    state = torch.load(path, map_location=map_location, weights_only=True)
    if state.get("format") not in _READABLE_FORMATS:
        raise ValueError(
            f"{path}: unknown checkpoint format {state.get('format')!r} "
            f"(this version reads {_READABLE_FORMATS})"
        )
    state = _upgrade(state)
    if state["strategy"] is not None and not isinstance(strategy, Stateful):
        raise ValueError(
            f"the checkpoint holds a strategy state but a {type(strategy).__name__} "
            "has no load_state_dict(): build the strategy as in the saved run"
        )
    strategy.model.load_state_dict(state["model"])
    if getattr(strategy, "optimized_param_id", 0) is None:
        # Avalanche resets the optimizer state the first time it sees the
        # model's parameters: do it now, so the loaded state survives train()
        strategy.make_optimizer(reset_optimizer_state=True)
    strategy.optimizer.load_state_dict(state["optimizer"])
    if state["scheduler"] is not None:
        if scheduler is None:
            warnings.warn(
                "the checkpoint holds a scheduler state but no scheduler was given",
                stacklevel=2,
            )
        else:
            scheduler.load_state_dict(state["scheduler"])
    targets = _stateful_plugins(strategy, plugins)
    saved = state["plugins"]
    if len(targets) != len(saved):
        raise ValueError(
            f"the checkpoint holds {len(saved)} plugin states "
            f"({[s['type'] for s in saved]}) but {len(targets)} stateful plugins "
            f"were given ({[type(p).__name__ for p in targets]})"
        )
    for plugin, plugin_state in zip(targets, saved):
        _load_plugin_state(plugin, plugin_state, dataset_like)
    if state["strategy_buffer"] is not None:
        load_buffer_state_dict(
            strategy.storage_policy, state["strategy_buffer"], dataset_like=dataset_like
        )
    for field, value in state["clock"].items():
        setattr(strategy.clock, field, int(value))
    if state["in_iteration"]:
        # the clock, last of the plugins, had not yet counted the saved iteration
        strategy.clock.after_training_iteration(strategy)
    if state["strategy"] is not None:
        strategy.load_state_dict(state["strategy"])
    set_rng_state(state["rng"])
    position = state["position"]
    return {
        "next_experience": int(state["clock"]["train_exp_counter"]),
        "experience": None if position is None else position["experience"],
        "iteration": None if position is None else position["iteration"],
        "extra": state["extra"],
    }


__all__ = ["FORMAT_VERSION", "load_checkpoint", "save_checkpoint"]
