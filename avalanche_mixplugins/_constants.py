"""Constant tensors of the training step, made once per size, dtype and device.

A step of GradMix needs a few tensors that depend only on the batch size
(``arange(N)``, the ``N x N`` matrix of distinct pairs) or are scalars
(``NaN``, ``-1``, ``0``). Creating them anew every step is one tensor
operation each, and on the CPU the step's cost is mostly per-operation
dispatch; these helpers create each once and return the same tensor after.
The tensors are shared: callers only read them (never write in place, never
hand them out as results that a caller might write). Nothing here imports
Avalanche.
"""

from __future__ import annotations

import torch
from torch import Tensor

_CACHE: dict[tuple, Tensor] = {}


def _device(device: torch.device | str) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def arange(n: int, device: torch.device | str) -> Tensor:
    """``torch.arange(n, device=device)`` (long), read only."""
    key = ("arange", n, _device(device))
    out = _CACHE.get(key)
    if out is None:
        out = _CACHE[key] = torch.arange(n, device=device)
    return out


def distinct_pairs(n: int, device: torch.device | str) -> Tensor:
    """Bool ``(n, n)``, true off the diagonal (``~torch.eye(n)``), read only."""
    key = ("distinct", n, _device(device))
    out = _CACHE.get(key)
    if out is None:
        out = _CACHE[key] = ~torch.eye(n, dtype=torch.bool, device=device)
    return out


def scalar(value: float, dtype: torch.dtype, device: torch.device | str) -> Tensor:
    """A 0-dim tensor holding ``value``, read only (for ``torch.where``)."""
    # NaN != NaN: key NaN by its name so that it is found again
    name = "nan" if value != value else float(value)
    key = ("scalar", name, dtype, _device(device))
    out = _CACHE.get(key)
    if out is None:
        out = _CACHE[key] = torch.full((), value, dtype=dtype, device=device)
    return out
