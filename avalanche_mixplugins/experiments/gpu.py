"""Training on an accelerator from an Avalanche strategy: mixed precision, memory
format, and a check of where a step makes the host wait for the device.

* :class:`Autocast`: ``torch.autocast`` around the forward and every loss a
  plugin adds before the backward;
* :class:`ScaledNaive`: ``Naive`` whose backward and optimizer step go
  through a ``torch.amp.GradScaler`` (float16);
* :class:`ChannelsLast`: inputs in ``channels_last``;
* :class:`SyncCheck` and :func:`record_sync_sites`:
  ``torch.cuda.set_sync_debug_mode`` armed for one iteration, and the
  source lines where that iteration synchronised.

Used by ``benchmarks/gpu_throughput.py``; the semi-supervised strategy has
its own ``amp`` and ``channels_last`` options.
"""

from __future__ import annotations

import os
import traceback
import warnings
from collections.abc import Callable, Mapping

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training import Naive


class SyncCheck(SupervisedPlugin):
    """Arm ``torch.cuda.set_sync_debug_mode`` for one training iteration.

    The mode (``"error"``: raise on the first host-device synchronisation,
    ``"warn"``: warn at each) is on from ``before_training_iteration`` to
    ``after_training_iteration`` of the iteration after ``skip`` others (the
    first ones initialise lazily), when the batch is already on the device;
    then training stops. Put it last.

    :param mode: ``"error"`` or ``"warn"``.
    :param skip: iterations trained before the checked one.
    """

    def __init__(self, *, mode: str = "error", skip: int = 1):
        super().__init__()
        self.mode, self.skip, self.count = mode, skip, 0

    def before_training_iteration(self, strategy, **kwargs):
        if self.count == self.skip:
            torch.cuda.set_sync_debug_mode(self.mode)

    def after_training_iteration(self, strategy, **kwargs):
        if self.count == self.skip:
            torch.cuda.set_sync_debug_mode(0)
            strategy.stop_training()
        self.count += 1


class Autocast(SupervisedPlugin):
    """``torch.autocast`` from ``before_forward`` to the end of ``before_backward``.

    Covers the strategy's forward and loss and the mixed-sample forward and
    loss that mixing plugins add in ``before_backward``: put it after them.
    """

    def __init__(self, *, device: torch.device, dtype: torch.dtype):
        super().__init__()
        self.device, self.dtype = device, dtype
        self._ctx = None

    def before_forward(self, strategy, **kwargs):
        if strategy.is_training and self._ctx is None:
            self._ctx = torch.autocast(self.device.type, dtype=self.dtype)
            self._ctx.__enter__()

    def before_backward(self, strategy, **kwargs):
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx = None


class ChannelsLast(SupervisedPlugin):
    """Inputs in ``channels_last`` (the model is converted once, at build)."""

    def before_forward(self, strategy, **kwargs):
        x = strategy.mbatch[0]
        if x.dim() == 4:
            strategy.mbatch[0] = x.contiguous(memory_format=torch.channels_last)


class ScaledNaive(Naive):
    """``Naive`` whose backward and step go through a ``torch.amp.GradScaler``."""

    def __init__(self, *, scaler: torch.amp.GradScaler | None = None, **kwargs):
        super().__init__(**kwargs)
        self.scaler = scaler

    def backward(self):
        if self.scaler is None:
            return super().backward()
        self.scaler.scale(self.loss).backward(retain_graph=self.retain_graph)

    def optimizer_step(self):
        if self.scaler is None:
            return super().optimizer_step()
        self.scaler.step(self.optimizer)
        self.scaler.update()


def _relative(path: str) -> str:
    """A source path from its package down (``ssl_ext/strategy.py``)."""
    path = path.replace(os.sep, "/")
    for marker in ("avalanche_mixplugins/", "ssl_ext/", "torch/", "avalanche/"):
        if marker in path:
            return marker + path.split(marker, 1)[1]
    return path


def classify_sync_site(
    filename: str, lineno: int, documented: Mapping[str, str]
) -> dict[str, str]:
    """``{"site": "file:line", "why": ...}``: why ``documented`` (keyed by
    ``file:line``) says the step waits for the device at that line, or
    ``"UNDOCUMENTED"`` (also for another line of a listed file)."""
    where = f"{_relative(filename)}:{lineno}"
    return {"site": where, "why": documented.get(where, "UNDOCUMENTED")}


def _reset_autocast() -> None:
    # an error inside an autocast region leaves it entered
    for device_type in ("cuda", "cpu"):
        torch.set_autocast_enabled(device_type, False)


def record_sync_sites(
    step: Callable[[str], object], documented: Mapping[str, str]
) -> dict:
    """Where one training iteration makes the host wait for the device.

    ``step(mode)`` trains with a :class:`SyncCheck` of that mode. First the
    iteration runs under ``"error"``: either it completes (no synchronisation
    at all) or the first synchronising call raises, and its Python frame is
    reported. Then it runs again under ``"warn"`` to list every
    synchronising site of the step. Each site is classified against
    ``documented`` (:func:`classify_sync_site`).
    """
    first = None
    try:
        step("error")
    except RuntimeError as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        ours = [f for f in frames if "site-packages/torch/" not in f.filename]
        frame = (ours or frames)[-1]
        first = classify_sync_site(frame.filename, frame.lineno, documented)
        first["error"] = str(exc).splitlines()[0][:120]
    finally:
        torch.cuda.set_sync_debug_mode(0)
        _reset_autocast()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            step("warn")
        finally:
            torch.cuda.set_sync_debug_mode(0)
    sites = {}
    for w in caught:
        if "synchroniz" in str(w.message).lower():
            site = classify_sync_site(w.filename, w.lineno, documented)
            sites[site["site"]] = site
    return {"error_mode": first or "no synchronisation", "all": list(sites.values())}


__all__ = [
    "Autocast",
    "ChannelsLast",
    "ScaledNaive",
    "SyncCheck",
    "classify_sync_site",
    "record_sync_sites",
]
