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
from torch import Tensor

# ---------------------------------------------------------------------------
# Choices and numbers
# ---------------------------------------------------------------------------


def check_one_of(name: str, value: Any, choices: Sequence) -> Any:
    """Return ``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_alpha(alpha: float) -> float:
    """Return ``alpha`` as a float, or raise ``ValueError`` if not positive."""
    try:
        alpha = float(alpha)
    except (TypeError, ValueError) as err:
        raise ValueError(f"alpha must be a positive number, got {alpha!r}") from err
    if not alpha > 0 or alpha == float("inf"):
        raise ValueError(
            f"alpha must be a positive finite number (Beta(alpha, alpha)), got {alpha}"
        )
    return alpha


def check_fraction(name: str, value: float) -> float:
    """Return ``value`` as a float in ``[0, 1]`` (a probability)."""
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}") from err
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return value


def check_weight(weight: float) -> float:
    """Return a loss weight as a non-negative finite float."""
    try:
        weight = float(weight)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"weight must be a non-negative number, got {weight!r}"
        ) from err
    if not (weight >= 0.0 and math.isfinite(weight)):
        raise ValueError(f"weight must be a non-negative finite number, got {weight}")
    return weight


def check_n_bins(n_bins) -> int:
    """Return a number of confidence bins as a positive int."""
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    return int(n_bins)


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
