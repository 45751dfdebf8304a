"""Exact checkpoints of Avalanche training runs as plain state.

``avalanche.training.checkpoint.save_checkpoint`` pickles the whole strategy
with dill, which fails with current dependencies (the optimizer cannot be
pickled). :func:`save_checkpoint` stores plain state instead (tensors, lists,
dicts, numbers, strings) with ``torch.save``, so :func:`load_checkpoint`
reads it back with ``torch.load(weights_only=True)``:

* the model's and the optimizer's state dicts, and a learning-rate
  scheduler's;
* the state of every plugin that has ``state_dict()`` (the mixing plugins:
  pair scores and their evidence, the plugins' random generators; CalibrateMix:
  AUM/APM tables), matched on load by position and type;
* replay buffers (``ReplayPlugin``'s storage policy and a strategy's own
  ``storage_policy``: ER-ACE, ER-AML, DER): the samples field by field as
  tensors, with the kind of each field (a tensor or a Python number, so the
  rebuilt samples collate with new ones), read without the current transform
  group; their data attributes (targets, task labels, sample ids, DER's stored
  logits); the reservoir weights; and the groups of
  ``ExperienceBalancedBuffer`` / ``ClassBalancedBuffer`` /
  ``ClassBalancedBufferWithLogits`` (DER);
* the strategy clock and experience counter;
* :class:`~ssl_ext.strategy.SemiSupervisedStrategy` state
  (``ssl_state_dict()``: FlexMatch thresholds, SoftMatch statistics,
  distribution alignment, EMA teacher, AMP scaler and, inside an experience,
  the loaders' positions and the iteration);
* the random states of torch (CPU and CUDA), numpy and Python's ``random``.

Two resume points are exact:

* **between experiences** (any strategy): save after ``strategy.train(exp)``
  returns, load into freshly built objects, continue with experience
  ``state["next_experience"]``;
* **inside an experience** (``SemiSupervisedStrategy`` with
  ``train_iterations``): save in ``after_training_iteration`` (e.g. with
  :class:`CheckpointPlugin`), load, and call ``strategy.train`` on the same
  experience (``state["experience"]``): it continues with the next iteration.

Avalanche's own strategies (``Naive`` + ``ReplayPlugin``, ``ER_ACE``,
``ER_AML``, ``DER``, ...) resume between experiences only: their loaders
(``ReplayDataLoader``, the strategies' cycling buffer loaders) cannot be
re-positioned, and ER-ACE / ER-AML update their buffer when an experience
starts, so ``save_checkpoint`` refuses to write inside one of their
experiences (``ValueError``) rather than write a file that would not resume
exactly.

Build the strategy, its plugins and its model exactly as in the saved run
before loading (same classes, sizes and plugin order).
"""

from __future__ import annotations

import copy
import random
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from avalanche.benchmarks.utils import DataAttribute
from avalanche.benchmarks.utils.classification_dataset import (
    TaskAwareSupervisedClassificationDataset,
)
from avalanche.benchmarks.utils.utils import concat_datasets
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
from avalanche.training.plugins.clock import Clock
from avalanche.training.storage_policy import (
    ClassBalancedBuffer,
    ExemplarsBuffer,
    ExperienceBalancedBuffer,
    ReservoirSamplingBuffer,
)
from avalanche.training.supervised.der import ClassBalancedBufferWithLogits
from torch import Tensor

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate

FORMAT_VERSION = 2
"""Version of the checkpoint layout written by :func:`save_checkpoint` (2: buffer
samples keep their structure, DER's buffer with logits; 1 is still read)."""
_READABLE_FORMATS = (1, 2)

_CLOCK_FIELDS = (
    "train_iterations",
    "train_exp_counter",
    "train_exp_epochs",
    "train_exp_iterations",
    "train_epoch_iterations",
    "total_iterations",
)


# --------------------------------------------------------------------- random
def rng_state() -> dict:
    """Random states of torch (CPU, CUDA), numpy and ``random`` as plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": gauss,
        },
    }
    return state


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        (
            n["kind"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached"],
        )
    )
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"]), p["gauss"]))


# -------------------------------------------------------------------- buffers
def _is_identity(transform) -> bool:
    """``None``, or a tuple/multi-param transform made only of ``None``."""
    if transform is None:
        return True
    parts = getattr(transform, "transforms", None)
    if isinstance(parts, list | tuple) and type(transform).__name__ in (
        "TupleTransform",
        "MultiParamTransform",
    ):
        return all(_is_identity(t) for t in parts)
    return False


def _transform_groups(dataset):
    """The first transform groups with a transform in an Avalanche dataset's tree."""
    todo = [getattr(dataset, "_flat_data", dataset)]
    while todo:
        node = todo.pop(0)
        groups = getattr(node, "_transform_groups", None)
        if groups is not None and any(
            not _is_identity(t) for t in groups.transform_groups.values()
        ):
            return groups
        todo.extend(getattr(node, "_datasets", []))
    return None


def _as_tensor(values: Sequence) -> Tensor:
    values = list(values)
    if values and isinstance(values[0], Tensor):
        return torch.stack([v.detach().cpu() for v in values])
    return torch.as_tensor(values)


def _field_kind(value) -> str:
    """How one element of a sample is stored: a tensor or a Python number."""
    if isinstance(value, Tensor):
        return "tensor"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    raise ValueError(
        "buffer samples must be made of tensors and numbers to be saved (got "
        f"{type(value).__name__}); build the stream from tensors or give its "
        "datasets a ToTensor/ToImage transform that is frozen "
        "(dataset.freeze_transforms())"
    )


class _SavedSamples(torch.utils.data.Dataset):
    """Samples rebuilt from :func:`_dataset_state`, with the original structure.

    Each sample is a tuple with one element per saved field, of the saved kind
    (a tensor, or a Python ``int``/``float``/``bool`` as the original dataset
    returned it), so that a batch mixing rebuilt and new samples collates.
    """

    _CAST = {"int": int, "float": float, "bool": bool}

    def __init__(self, fields: list[dict]):
        self.kinds = [f["kind"] for f in fields]
        self.values = [f["values"] for f in fields]

    def __len__(self) -> int:
        return self.values[0].shape[0]

    def __getitem__(self, index):
        return tuple(
            v[index] if kind == "tensor" else self._CAST[kind](v[index])
            for kind, v in zip(self.kinds, self.values)
        )


def _dataset_state(dataset) -> dict | None:
    """Samples of a buffer dataset as tensors, with their structure and data
    attributes (those appended to each sample are saved once, as attributes)."""
    n = len(dataset)
    if n == 0:
        return None
    raw = dataset.remove_current_transform_group()
    appended = sum(
        1 for attr in dataset._data_attributes.values() if attr.use_in_getitem
    )
    samples = []
    for i in range(n):
        item = raw[i]
        if not isinstance(item, list | tuple):
            raise ValueError(
                "buffer samples must be tuples (x, y, ...) to be saved, got "
                f"{type(item).__name__}"
            )
        samples.append(item[: len(item) - appended])
    width = len(samples[0])
    if width == 0 or any(len(s) != width for s in samples):
        raise ValueError("buffer samples must all have the same number of elements")
    fields = []
    for k in range(width):
        column = [s[k] for s in samples]
        kinds = {_field_kind(v) for v in column}
        if len(kinds) != 1:
            raise ValueError(
                f"element {k} of the buffer samples mixes {sorted(kinds)}: cannot "
                "be saved as one tensor"
            )
        kind = kinds.pop()
        values = (
            torch.stack([v.detach().cpu() for v in column])
            if kind == "tensor"
            else torch.tensor(column)
        )
        fields.append({"kind": kind, "values": values})
    groups = getattr(dataset._flat_data, "_transform_groups", None)
    attributes = [
        {
            "name": name,
            "values": _as_tensor(attr.data),
            "in_getitem": bool(attr.use_in_getitem),
        }
        for name, attr in dataset._data_attributes.items()
    ]
    return {
        "fields": fields,
        "attributes": attributes,
        "group": "train" if groups is None else str(groups.current_group),
        "has_transforms": _transform_groups(dataset) is not None,
    }


def _rebuild_dataset(state: dict | None, dataset_like=None):
    """An Avalanche classification dataset holding the saved samples."""
    if state is None:
        return concat_datasets([])
    groups = None
    if dataset_like is not None:
        groups = _transform_groups(dataset_like)
    if state["has_transforms"] and groups is None:
        raise ValueError(
            "the saved buffer had transforms: pass dataset_like=<a dataset of the "
            "stream, e.g. benchmark.train_stream[0].dataset> to load_checkpoint so "
            "the rebuilt buffer gets the same transform groups"
        )
    attrs = {a["name"]: a for a in state["attributes"]}
    if "targets" not in attrs or "targets_task_labels" not in attrs:
        raise ValueError("a saved buffer needs targets and targets_task_labels")
    fields = state.get("fields")
    if fields is None:  # format 1: the inputs only, labels as Python ints
        fields = [
            {"kind": "tensor", "values": state["x"]},
            {"kind": "int", "values": attrs["targets"]["values"]},
        ]
    data_attributes = [
        DataAttribute(
            a["values"].tolist() if a["values"].dim() == 1 else list(a["values"]),
            a["name"],
            use_in_getitem=a["in_getitem"],
        )
        for a in state["attributes"]
    ]
    if groups is not None:
        groups = copy.copy(groups)
        groups.transform_groups = dict(groups.transform_groups)
        groups.current_group = state["group"]
    return TaskAwareSupervisedClassificationDataset(
        [_SavedSamples(fields)],
        data_attributes=data_attributes,
        transform_groups=groups,
    )


def _reservoir_state(buffer: ReservoirSamplingBuffer) -> dict:
    return {
        "max_size": int(buffer.max_size),
        "weights": buffer._buffer_weights.detach().cpu().clone(),
        "data": _dataset_state(buffer.buffer),
    }


def _load_reservoir(buffer: ReservoirSamplingBuffer, state: dict, dataset_like):
    buffer.max_size = int(state["max_size"])
    buffer._buffer_weights = state["weights"].clone()
    buffer.buffer = _rebuild_dataset(state["data"], dataset_like)


_BALANCED_KINDS = {
    "experience_balanced": ExperienceBalancedBuffer,
    "class_balanced": ClassBalancedBuffer,
    "class_balanced_logits": ClassBalancedBufferWithLogits,
}
_BUFFER_KINDS = {"reservoir": ReservoirSamplingBuffer, **_BALANCED_KINDS}


def _buffer_kind(policy: ExemplarsBuffer) -> str:
    # exact types first: the balanced policies are not subclasses of each other,
    # but a user subclass must map to the closest supported parent
    for kind, cls in _BUFFER_KINDS.items():
        if type(policy) is cls:
            return kind
    for kind, cls in _BUFFER_KINDS.items():
        if isinstance(policy, cls):
            return kind
    raise ValueError(
        f"cannot save a {type(policy).__name__} storage policy: supported are "
        + ", ".join(cls.__name__ for cls in _BUFFER_KINDS.values())
    )


def buffer_state_dict(policy: ExemplarsBuffer) -> dict:
    """Plain state of an Avalanche storage policy: reservoir, experience- or
    class-balanced, or DER's class-balanced buffer with logits (the stored
    logits are a data attribute of its samples)."""
    kind = _buffer_kind(policy)
    if kind == "reservoir":
        return {"kind": kind, **_reservoir_state(policy)}
    state = {
        "kind": kind,
        "max_size": int(policy.max_size),
        "groups": [
            {"key": int(k), "buffer": _reservoir_state(g)}
            for k, g in policy.buffer_groups.items()
        ],
    }
    if kind == "experience_balanced":
        state["num_exps"] = int(policy._num_exps)
    else:
        state["seen_classes"] = sorted(int(c) for c in policy.seen_classes)
    return state


def load_buffer_state_dict(
    policy: ExemplarsBuffer, state: dict, *, dataset_like=None
) -> None:
    """Restore :func:`buffer_state_dict` into a storage policy of the same kind.

    :param dataset_like: a dataset of the stream whose transform groups the
        rebuilt buffer gets (needed when the saved buffer had transforms).
    """
    kind = state["kind"]
    if kind not in _BUFFER_KINDS:
        raise ValueError(f"unknown saved storage policy kind {kind!r}")
    found = _buffer_kind(policy)
    if found != kind:
        raise ValueError(
            f"the checkpoint holds a {_BUFFER_KINDS[kind].__name__}, the storage "
            f"policy is a {type(policy).__name__}: build the strategy as in the "
            "saved run"
        )
    if kind == "reservoir":
        _load_reservoir(policy, state, dataset_like)
        return
    policy.max_size = int(state["max_size"])
    groups = {}
    for g in state["groups"]:
        buffer = ReservoirSamplingBuffer(int(g["buffer"]["max_size"]))
        _load_reservoir(buffer, g["buffer"], dataset_like)
        groups[int(g["key"])] = buffer
    policy.buffer_groups = groups
    if kind == "experience_balanced":
        policy._num_exps = int(state["num_exps"])
    else:
        policy.seen_classes = set(int(c) for c in state["seen_classes"])


# -------------------------------------------------------------------- plugins
def _stateful_plugins(strategy, plugins) -> list:
    """Plugins whose state is saved, in order (the clock and evaluator apart)."""
    if plugins is None:
        plugins = getattr(strategy, "plugins", [])
    return [
        p
        for p in plugins
        if not isinstance(p, Clock | EvaluationPlugin)
        and (callable(getattr(p, "state_dict", None)) or isinstance(p, ReplayPlugin))
    ]


def _plugin_state(plugin) -> dict:
    state: dict[str, Any] = {"type": type(plugin).__name__}
    if callable(getattr(plugin, "state_dict", None)):
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
    :class:`~ssl_ext.strategy.SemiSupervisedStrategy` with
    ``train_iterations``, from a plugin's ``after_training_iteration`` (see
    :class:`CheckpointPlugin`).

    :param path: file to write (``torch.save``; parent directories are made).
    :param strategy: the Avalanche strategy.
    :param plugins: plugins whose state to save; default every plugin of the
        strategy. Those with ``state_dict()`` and every ``ReplayPlugin`` count.
    :param scheduler: a learning-rate scheduler (anything with ``state_dict``).
    :param extra: plain data of your own, returned by :func:`load_checkpoint`.
    :raises ValueError: if called inside an experience of a strategy that
        cannot resume there, or a buffer cannot be saved.
    """
    ssl_state = None
    if callable(getattr(strategy, "ssl_state_dict", None)):
        ssl_state = strategy.ssl_state_dict()
    # inside a training iteration (train() resets mbatch when it returns)
    in_iteration = bool(strategy.is_training) and strategy.mbatch is not None
    if in_iteration and (ssl_state is None or ssl_state.get("position") is None):
        raise ValueError(
            "a checkpoint inside an experience needs a SemiSupervisedStrategy with "
            "train_iterations (saved from after_training_iteration); for other "
            "strategies save between experiences, after strategy.train(exp)"
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
        "ssl": ssl_state,
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
    position = None
    if state["ssl"] is not None:
        strategy.load_ssl_state_dict(state["ssl"])
        position = state["ssl"].get("position")
    set_rng_state(state["rng"])
    return {
        "next_experience": int(state["clock"]["train_exp_counter"]),
        "experience": None if position is None else int(position["experience"]),
        "iteration": None if position is None else int(position["iteration"]),
        "extra": state["extra"],
    }


class CheckpointPlugin(SupervisedPlugin, supports_distributed=True):
    """Save a checkpoint every ``every`` training iterations of an experience.

    Needs a :class:`~ssl_ext.strategy.SemiSupervisedStrategy` with
    ``train_iterations`` (other strategies resume between experiences: call
    :func:`save_checkpoint` after ``strategy.train(exp)``). Put it after the
    plugins whose state it saves. Under ``torch.distributed`` only rank 0
    writes.

    :param path: file written (overwritten at each save).
    :param every: save after every ``every`` iterations of an experience.
    :param scheduler: a learning-rate scheduler to include.
    """

    def __init__(self, path: str | Path, *, every: int, scheduler: Any | None = None):
        super().__init__()
        if isinstance(every, bool) or int(every) != every or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.path = Path(path)
        self.every = int(every)
        self.scheduler = scheduler
        self.saves = 0

    def after_training_iteration(self, strategy, **kwargs):
        # the clock (last plugin) has not yet counted this iteration
        if (strategy.clock.train_exp_iterations + 1) % self.every:
            return
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return
        save_checkpoint(self.path, strategy, scheduler=self.scheduler)
        self.saves += 1


__all__ = [
    "FORMAT_VERSION",
    "CheckpointPlugin",
    "buffer_state_dict",
    "load_buffer_state_dict",
    "load_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]
