"""Replay buffers as plain state: Avalanche storage policies and their samples.

The samples of a buffer are saved field by field as tensors, with the kind of
each field (a tensor or a Python number, so the rebuilt samples collate with
new ones), read without the current transform group; with them, their data
attributes (targets, task labels, sample ids, DER's stored logits). A
policy's own state is its reservoir weights and, for the balanced policies,
its groups (``ExperienceBalancedBuffer``, ``ClassBalancedBuffer``, DER's
``ClassBalancedBufferWithLogits``).

Avalanche has no public accessor for some of what an exact resume needs; these
private attributes are read or written here:

* ``ReservoirSamplingBuffer._buffer_weights`` (read and written): the
  reservoir keys of the stored samples, which decide what the next
  experience replaces;
* ``ExperienceBalancedBuffer._num_exps`` (written on load; saved as
  ``len(buffer_groups)``, which equals it): ``post_adapt`` numbers the next
  group from it;
* ``AvalancheDataset._data_attributes`` (read): the data attributes and
  whether each is appended to the items (no public listing);
* ``AvalancheDataset._flat_data`` and its ``_transform_groups`` /
  ``_datasets`` (read): the transform groups a rebuilt buffer must get (no
  public accessor; ``dataset.transform`` raises).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from avalanche.benchmarks.utils import DataAttribute
from avalanche.benchmarks.utils.classification_dataset import (
    TaskAwareSupervisedClassificationDataset,
)
from avalanche.benchmarks.utils.utils import concat_datasets
from avalanche.training.storage_policy import (
    ClassBalancedBuffer,
    ExemplarsBuffer,
    ExperienceBalancedBuffer,
    ReservoirSamplingBuffer,
)
from avalanche.training.supervised.der import ClassBalancedBufferWithLogits
from torch import Tensor


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
        # the experience count: one group per experience seen (post_adapt)
        state["num_exps"] = len(policy.buffer_groups)
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
        policy._num_exps = int(state["num_exps"])  # no setter: see the module doc
    else:
        policy.seen_classes = set(int(c) for c in state["seen_classes"])


__all__ = ["buffer_state_dict", "load_buffer_state_dict"]
