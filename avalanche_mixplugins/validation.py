"""Argument validators shared by both packages: each raises ValueError saying what is accepted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset


# -- semi-supervised arguments
def check_positive_int(name: str, value) -> int:
    """Return ``value`` as an ``int`` >= 1 (``bool`` refused)."""
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_choice(name: str, value, choices: tuple) -> None:
    """``value`` is one of ``choices`` (a mode, a rule, a loss name)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_warmup(warmup) -> int | float:
    """A warm-up: an ``int`` number of iterations >= 0, or a ``float``
    fraction of the iterations in ``[0, 1)``."""
    if isinstance(warmup, bool) or not isinstance(warmup, int | float):
        raise ValueError(f"warmup must be an int or a float, got {warmup!r}")
    if isinstance(warmup, int) and warmup < 0:
        raise ValueError(f"warmup must be >= 0 iterations, got {warmup}")
    if isinstance(warmup, float) and not 0.0 <= warmup < 1.0:
        raise ValueError(
            f"a float warmup is a fraction of the iterations in [0, 1), got {warmup}"
        )
    return warmup


def check_probability(name: str, value) -> float:
    """Return ``value`` as a float in ``[0, 1]`` (a threshold, a momentum)."""
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}") from err
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def check_k_fraction(k_fraction: float) -> float:
    """Return ``k_fraction`` as a float in ``(0, 1]`` or raise ``ValueError``."""
    try:
        value = float(k_fraction)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"k_fraction must be a number in (0, 1], got {k_fraction!r}"
        ) from err
    if not 0.0 < value <= 1.0:
        raise ValueError(f"k_fraction must be in (0, 1], got {value}")
    return value


def check_batch_logits(logits: Tensor) -> Tensor:
    """Logits ``(N, C)``; returned detached, as float32."""
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits)
        raise ValueError(f"expected logits of shape (N, C), got {shape}")
    return logits.detach().float()


def check_indexed_logits(logits: Tensor, index: Tensor) -> Tensor:
    """Logits ``(N, C)`` with ``C >= 2`` and an integer ``index`` ``(N,)``
    (per-sample tables); the logits are returned detached, as float32."""
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[1] < 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits)
        raise ValueError(f"expected logits of shape (N, C) with C >= 2, got {shape}")
    if not isinstance(index, Tensor) or index.shape != logits.shape[:1]:
        shape = tuple(index.shape) if isinstance(index, Tensor) else type(index)
        raise ValueError(
            f"index must be a tensor of shape ({logits.shape[0]},), got {shape}"
        )
    if index.is_floating_point():
        raise ValueError(f"index must hold integers, got {index.dtype}")
    return logits.detach().float()


def check_scores(scores: Tensor) -> None:
    """Per-sample scores ``(N,)`` with ``N >= 2`` (a median split needs two)."""
    if not isinstance(scores, Tensor) or scores.dim() != 1 or scores.shape[0] < 2:
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores)
        raise ValueError(f"expected scores of shape (N,) with N >= 2, got {shape}")


def check_unique_ids(ids: Sequence[int] | Tensor) -> None:
    """Labeled sample ids key per-sample tables (e.g. CalibrateMix's AUM):
    two samples must never share one."""
    ids = torch.as_tensor(ids)
    if ids.numel() and torch.unique(ids).numel() != ids.numel():
        values, counts = torch.unique(ids, return_counts=True)
        dup = values[counts > 1][:5].tolist()
        raise ValueError(
            f"labeled sample ids collide (ids {dup} are used more than once): give "
            "every labeled sample its own id, e.g. add_sample_ids(dataset, ids=<index "
            "in the original training set>), or leave the ids out and the strategy "
            "numbers the samples"
        )


def check_unlabeled_source(unlabeled: Any) -> None:
    """Unlabeled data: a dataset, a non-empty list/tuple of datasets (one per
    experience), or a callable ``experience -> dataset``."""
    if not (
        isinstance(unlabeled, Dataset | list | tuple)
        or (callable(unlabeled) and not isinstance(unlabeled, Dataset))
    ):
        raise ValueError(
            "unlabeled must be a Dataset, a list/tuple of datasets (one per "
            f"experience) or a callable experience -> dataset; got {type(unlabeled)}"
        )
    if isinstance(unlabeled, list | tuple) and len(unlabeled) == 0:
        raise ValueError("unlabeled is an empty list")


def check_train_iterations(train_iterations: Any, train_epochs: int) -> int | None:
    """Iterations per experience (``None``: epochs); exclusive with epochs != 1."""
    if train_iterations is None:
        return None
    if int(train_iterations) != train_iterations or train_iterations < 1:
        raise ValueError(
            f"train_iterations must be a positive integer or None, got "
            f"{train_iterations!r}"
        )
    if train_epochs != 1:
        raise ValueError("give either train_iterations or train_epochs, not both")
    return int(train_iterations)


def check_ema_decay(ema_decay: Any) -> float | None:
    """An EMA decay in ``[0, 1)``, or ``None`` (no EMA)."""
    if ema_decay is not None and not 0.0 <= float(ema_decay) < 1.0:
        raise ValueError(f"ema_decay must be in [0, 1) or None, got {ema_decay}")
    return None if ema_decay is None else float(ema_decay)
