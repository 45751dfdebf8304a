"""Argument validators shared by both packages: each raises ValueError saying what is accepted.

Every check returns the value in the type the caller keeps (``float``,
``int``, ``list``), so a constructor reads ``self.alpha = check_alpha(alpha)``.
The messages name the argument as the user wrote it and what it may be; the
tests match them, so change them only with the tests. Nothing here imports
Avalanche.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

# ---------------------------------------------------------------------------
# Choices and numbers
# ---------------------------------------------------------------------------


def check_one_of(name: str, value: Any, choices: Sequence) -> Any:
    """Return ``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _float_of(name: str, value: Any, accepted: str) -> float:
    """``value`` as a float, or ``ValueError`` "``name`` must be ``accepted``"."""
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be {accepted}, got {value!r}") from err


def check_alpha(alpha: float) -> float:
    """Return ``alpha`` as a float, or raise ``ValueError`` if not positive."""
    alpha = _float_of("alpha", alpha, "a positive number")
    if not alpha > 0 or alpha == float("inf"):
        raise ValueError(
            f"alpha must be a positive finite number (Beta(alpha, alpha)), got {alpha}"
        )
    return alpha


def check_fraction(name: str, value: float) -> float:
    """Return ``value`` as a float in ``[0, 1]`` (a probability, a threshold,
    a momentum)."""
    value = _float_of(name, value, "a number in [0, 1]")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


check_probability = check_fraction
"""``value`` as a float in ``[0, 1]`` (the SSL thresholds and momenta)."""


def check_weight(weight: float) -> float:
    """Return a loss weight as a non-negative finite float."""
    weight = _float_of("weight", weight, "a non-negative number")
    if not (weight >= 0.0 and math.isfinite(weight)):
        raise ValueError(f"weight must be a non-negative finite number, got {weight}")
    return weight


def check_n_bins(n_bins) -> int:
    """Return a number of confidence bins as a positive int."""
    return check_positive_int("n_bins", n_bins)


# ---------------------------------------------------------------------------
# Data splits and class-incremental streams
# ---------------------------------------------------------------------------


def check_seed(seed: Any) -> int:
    """Return a seed as an int in ``[0, 2**32)`` (numpy's and scikit-learn's range)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed!r}")
    return int(seed)


def check_test_fraction(test_fraction: Any) -> float:
    """Return the share of a test split as a float strictly between 0 and 1."""
    if isinstance(test_fraction, bool) or not isinstance(
        test_fraction, (int, float, np.floating)
    ):
        raise ValueError(f"test_fraction must be a float, got {test_fraction!r}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(
            f"test_fraction must be strictly between 0 and 1, got {test_fraction!r}"
        )
    return float(test_fraction)


def check_n_experiences(n_experiences: Any, num_classes: int = 10) -> int:
    """Return a number of experiences that divides ``num_classes`` evenly."""
    valid = [d for d in range(1, num_classes + 1) if num_classes % d == 0]
    if isinstance(n_experiences, bool) or not isinstance(
        n_experiences, (int, np.integer)
    ):
        raise ValueError(
            f"n_experiences must be an int, one of {valid}, got {n_experiences!r}"
        )
    if int(n_experiences) not in valid:
        raise ValueError(
            f"n_experiences={n_experiences!r} does not divide the {num_classes} "
            f"classes evenly: every experience must hold the same number of "
            f"classes, so n_experiences must be one of {valid}"
        )
    return int(n_experiences)


def check_class_order(
    fixed_class_order: Any, num_classes: int = 10
) -> list[int] | None:
    """Return a class order as a list: ``None`` or a permutation of ``0..num_classes-1``."""
    if fixed_class_order is None:
        return None
    try:
        order = [int(c) for c in fixed_class_order]
    except (TypeError, ValueError):
        raise ValueError(
            "fixed_class_order must be a sequence of ints (a permutation of "
            f"0..{num_classes - 1}), got {fixed_class_order!r}"
        ) from None
    if sorted(order) != list(range(num_classes)):
        raise ValueError(
            "fixed_class_order must be a permutation of the class labels "
            f"0..{num_classes - 1} (each exactly once), got {order}"
        )
    return order


# ---------------------------------------------------------------------------
# Tensors
# ---------------------------------------------------------------------------


def check_label_range(y: Tensor, n_outputs: int) -> None:
    """Raise ``ValueError`` (saying what to do) if a label does not index the outputs."""
    if y.numel() == 0:
        return
    top = int(y.max())
    if top >= n_outputs or int(y.min()) < 0:
        raise ValueError(
            f"label {top} is outside the model's {n_outputs} outputs; "
            "give the model a head with one output per class of the stream "
            "(or use avalanche.models.IncrementalClassifier)"
        )


def check_mix_shapes(x: Tensor, partner: Tensor, lam: Tensor) -> None:
    """A non-empty batch ``(N, ...)`` with a partner index and a ``lam`` per sample."""
    if x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(
            f"expected a non-empty batch (N, ...), got shape {tuple(x.shape)}"
        )
    n = x.shape[0]
    if partner.shape != (n,):
        raise ValueError(
            f"partner must have shape ({n},) to match the batch, got {tuple(partner.shape)}"
        )
    if lam.shape != (n,):
        raise ValueError(f"lam must have shape ({n},), got {tuple(lam.shape)}")


def check_head_features(h: Tensor, logits: Tensor, targets: Tensor) -> None:
    """Head inputs ``(N, D)``, logits and targets ``(N, C)`` of the same batch."""
    if h.dim() != 2:
        raise ValueError(
            "the head's input must be (N, D) features, got shape "
            f"{tuple(h.shape)}; use grad_space='full' for this model"
        )
    if logits.shape != targets.shape or logits.shape[0] != h.shape[0]:
        raise ValueError(
            f"logits {tuple(logits.shape)}, targets {tuple(targets.shape)} and "
            f"features {tuple(h.shape)} must agree on (N, C) and N"
        )


# -- semi-supervised arguments
def check_positive_int(name: str, value) -> int:
    """Return ``value`` as an ``int`` >= 1 (``bool`` refused)."""
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


check_choice = check_one_of
"""``value`` is one of ``choices`` (a mode, a rule, a loss name)."""


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


def check_k_fraction(k_fraction: float) -> float:
    """Return ``k_fraction`` as a float in ``(0, 1]`` or raise ``ValueError``."""
    value = _float_of("k_fraction", k_fraction, "a number in (0, 1]")
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
