"""A CPU emulation of where a training step would make the host wait for a GPU.

:class:`HostSyncAudit` is a ``TorchFunctionMode`` that labels every tensor it
sees as *host* or *device* and records, in the package's own code
(``avalanche_mixplugins/`` and ``ssl_ext/``), every event that on an
accelerator blocks the host or copies host memory into a device tensor:

* ``read``: a device value reaches Python (``.item()``, ``bool()``,
  ``int()``, ``float()``, ``.tolist()``, ``.numpy()``, ``.cpu()``, a copy into
  a host tensor);
* ``copy``: a blocking host-to-device copy (``host.to(device)`` without
  ``non_blocking=True``, ``torch.tensor(data, device=...)``, ``copy_`` of a
  host tensor into a device one, a host tensor with elements used in an
  operation on device tensors);
* ``cpu_generator``: a random draw on a CPU generator for, or into, a device
  tensor;
* ``shape``: an operation whose output shape depends on device values
  (``nonzero``, boolean-mask indexing, ``masked_select``, ``unique``,
  ``isin``'s sorting path, one-argument ``where``, ``repeat_interleave`` by
  a tensor).

Labels: a tensor created by a factory without ``device=``, drawn from a
generator that is not registered as a device generator, or produced by
``.cpu()`` is *host*; a factory with ``device=``, ``.to(device)`` of anything
and a draw from a registered generator give *device*; any other operation's
output is *device* if one of its tensor inputs is, else *host*; tensors the
audit never saw (model parameters, the batch Avalanche moved) count as
device. Counting is switched on and off (:attr:`counting`), labelling is
always on, so a test can label from the start of a run and count only
steady-state iterations.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIRS = tuple(str(ROOT / d) + "/" for d in ("avalanche_mixplugins", "ssl_ext"))
_TORCH_DIR = str(Path(torch.__file__).resolve().parent) + "/"
_HERE = str(Path(__file__).resolve())

HOST, DEVICE = "host", "device"
_ATTR = "_host_sync_label"

_T = torch.Tensor
READS = {
    _T.item,
    _T.__bool__,
    _T.__int__,
    _T.__float__,
    _T.__index__,
    _T.__complex__,
    _T.tolist,
    _T.numpy,
}
FACTORIES = {
    torch.zeros,
    torch.ones,
    torch.empty,
    torch.full,
    torch.arange,
    torch.eye,
    torch.linspace,
    torch.rand,
    torch.randn,
    torch.randint,
    torch.randperm,
    torch.normal,
    torch.empty_strided,
    torch.tensor,
    torch.as_tensor,
    torch.scalar_tensor,
}
FROM_DATA = {torch.tensor, torch.as_tensor}
SHAPE_OPS = {
    torch.nonzero,
    _T.nonzero,
    torch.argwhere,
    _T.argwhere,
    torch.masked_select,
    _T.masked_select,
    torch.unique,
    _T.unique,
    torch.unique_consecutive,
    _T.unique_consecutive,
    torch.isin,
}
MOVES = {_T.to, _T.cuda}
INPLACE_RANDOM = {
    _T.uniform_,
    _T.normal_,
    _T.exponential_,
    _T.bernoulli_,
    _T.random_,
    _T.geometric_,
    _T.cauchy_,
    _T.log_normal_,
}


def label(t: torch.Tensor) -> str:
    return getattr(t, _ATTR, DEVICE)


def _set(t, value: str) -> None:
    for x in tree_flatten(t)[0]:
        if isinstance(x, torch.Tensor):
            try:
                setattr(x, _ATTR, value)
            except (AttributeError, RuntimeError):
                pass


@dataclass(frozen=True)
class Event:
    kind: str
    site: str
    what: str

    def __str__(self) -> str:
        return f"{self.kind} at {self.site} ({self.what})"


class HostSyncAudit(TorchFunctionMode):
    """Record host round trips of the package's code while :attr:`counting`."""

    def __init__(self):
        super().__init__()
        self.counting = False
        self.events: list[Event] = []
        self._device_generators: list[torch.Generator] = []

    def register(self, generator: torch.Generator | None) -> None:
        """Mark ``generator`` as one that lives on the training device."""
        if generator is not None and not any(
            generator is g for g in self._device_generators
        ):
            self._device_generators.append(generator)

    def _gen_label(self, g) -> str | None:
        if g is None:
            return None
        return DEVICE if any(g is d for d in self._device_generators) else HOST

    # -- recording ---------------------------------------------------------
    def _site(self) -> str | None:
        """``file:line`` of the innermost frame outside torch, if in the package."""
        f = sys._getframe(2)
        while f is not None:
            name = f.f_code.co_filename
            if not name.startswith(_TORCH_DIR) and name != _HERE:
                if name.startswith(PACKAGE_DIRS):
                    return f"{Path(name).relative_to(ROOT)}:{f.f_lineno}"
                return None
            f = f.f_back
        return None

    def _record(self, kind: str, func, detail: str = "") -> None:
        if not self.counting:
            return
        site = self._site()
        if site is not None:
            name = getattr(func, "__name__", str(func))
            self.events.append(Event(kind, site, name + detail))

    def counts(self) -> Counter:
        return Counter(e.kind for e in self.events)

    def sites(self) -> list[str]:
        return sorted({str(e) for e in self.events})

    # -- the mode ----------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat = tree_flatten((args, kwargs))[0]
        tensors = [x for x in flat if isinstance(x, torch.Tensor)]
        labels = [label(t) for t in tensors]
        any_dev = DEVICE in labels
        gen = self._gen_label(kwargs.get("generator"))
        out_label = None

        if func in READS or func is _T.cpu:
            if tensors and label(tensors[0]) == DEVICE:
                self._record("read", func)
            out_label = HOST
        elif func in MOVES:
            src = label(args[0])
            dev = func is _T.cuda or _to_device(args[1:], kwargs) is not None
            if dev:
                if src == HOST and not kwargs.get("non_blocking", False):
                    self._record("copy", func)
                out_label = DEVICE
            elif _to_device(args[1:], kwargs) is None:
                out_label = src
        elif func in FACTORIES:
            has_device = kwargs.get("device") is not None
            if func in FROM_DATA and has_device:
                data = args[0] if args else kwargs.get("data")
                if isinstance(data, torch.Tensor):
                    if label(data) == HOST:
                        self._record("copy", func)
                else:
                    self._record("copy", func)
            if gen == HOST and has_device:
                self._record("cpu_generator", func)
            out_label = gen or (DEVICE if has_device else HOST)
            if func in FROM_DATA and not has_device and tensors:
                out_label = label(tensors[0])
        elif func in INPLACE_RANDOM:
            if gen == HOST and label(args[0]) == DEVICE:
                self._record("cpu_generator", func)
            out_label = label(args[0])
        else:
            if gen == HOST and any_dev:
                self._record("cpu_generator", func)
            if func in SHAPE_OPS and any_dev:
                self._record("shape", func)
            elif func is torch.where and len(args) + len(kwargs) == 1 and any_dev:
                self._record("shape", func)
            elif func is torch.repeat_interleave or func is _T.repeat_interleave:
                reps = args[1] if len(args) > 1 else kwargs.get("repeats")
                if isinstance(reps, torch.Tensor) and label(reps) == DEVICE:
                    self._record("shape", func)
            if func in (_T.__getitem__, _T.__setitem__, _T.index_put_, _T.index_put):
                idx = args[1] if len(args) > 1 else None
                for t in tree_flatten(idx)[0]:
                    if (
                        isinstance(t, torch.Tensor)
                        and t.dtype in (torch.bool, torch.uint8)
                        and label(t) == DEVICE
                    ):
                        self._record("shape", func)
            if func is _T.copy_ and len(tensors) >= 2:
                dst, src = label(tensors[0]), label(tensors[1])
                if dst == DEVICE and src == HOST and tensors[1].dim() > 0:
                    self._record("copy", func)
                elif dst == HOST and src == DEVICE:
                    self._record("read", func)
            elif any_dev and any(
                lab == HOST and t.dim() > 0 for t, lab in zip(tensors, labels)
            ):
                # an accelerator op would copy this host tensor in (or fail)
                shapes = [f"{lab}{tuple(t.shape)}" for t, lab in zip(tensors, labels)]
                self._record("copy", func, ": " + ", ".join(shapes))
            if func is _T.copy_:
                out_label = label(tensors[0]) if tensors else None
            else:
                out_label = gen or (DEVICE if any_dev else HOST)

        out = func(*args, **kwargs)
        if out_label is not None and func not in (_T.__setitem__,):
            if not (func in READS or func is _T.__len__):
                _set(out, out_label)
        return out


def _to_device(args, kwargs):
    """The device argument of ``Tensor.to``, or ``None`` if only a dtype."""
    if "device" in kwargs and kwargs["device"] is not None:
        return kwargs["device"]
    for a in args:
        if isinstance(a, (str, torch.device)):
            return a
        if isinstance(a, torch.Tensor):  # .to(other): other's device
            return a.device
    return None
