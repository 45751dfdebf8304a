"""Mixed precision, an EMA teacher and skipped non-finite steps, as an
Avalanche template mixin.

Avalanche builds its templates from mixins (``SupervisedTemplate`` is
``BatchObservation + SupervisedProblem + SGDUpdate + BaseSGDTemplate``);
:class:`AmpEmaUpdate` is one more, placed before ``SupervisedTemplate`` in a
strategy's bases. It provides:

* :meth:`~AmpEmaUpdate.model_forward`: a forward under ``torch.autocast``
  (bfloat16 or float16) in the channels-last memory format, float32 logits;
* ``backward`` / ``optimizer_step``: through a ``torch.amp.GradScaler`` with
  float16; without one, a step whose loss or gradients hold NaN or inf is
  undone on the device (counted there in ``skipped_steps``, read and warned
  about once per epoch), so the weights stay finite; after each step, the
  EMA teacher (``timm.utils.ModelEmaV3``'s update, its clock on the device)
  averages the model;
* :meth:`~AmpEmaUpdate._sync_ema`: create the teacher, or rebuild it when the
  model's shapes changed (a grown classifier) keeping what still fits.

The host sets, in its constructor, ``amp_dtype`` (:func:`resolve_amp_dtype`),
``channels_last``, ``scaler``, ``ema_decay``, ``ema_warmup``, and calls
:meth:`~AmpEmaUpdate._init_update_state`.
"""

from __future__ import annotations

import copy
import warnings

import torch
from timm.utils import ModelEmaV3
from torch import Tensor, nn


def resolve_amp_dtype(
    amp: bool | str | None, device: torch.device
) -> torch.dtype | None:
    """The autocast dtype of ``amp`` (``None``: full precision).

    :param amp: ``False``/``None``, ``True`` (bfloat16 on CPU, float16 on
        CUDA), ``"bf16"`` or ``"fp16"`` (CUDA only).
    """
    if amp is False or amp is None:
        return None
    if amp is True:
        return torch.float16 if device.type == "cuda" else torch.bfloat16
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError("amp='fp16' needs a CUDA device; use 'bf16' on CPU")
        return torch.float16
    raise ValueError(f"amp must be False, True, 'bf16' or 'fp16', got {amp!r}")


def warn_once(warned: set[str], kind: str, message: str) -> None:
    """Emit ``message`` as a ``RuntimeWarning`` the first time ``kind`` is seen."""
    if kind not in warned:
        warned.add(kind)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


class AmpEmaUpdate:
    """Template mixin: AMP forward, guarded update step, EMA teacher."""

    amp_dtype: torch.dtype | None
    channels_last: bool
    scaler: torch.amp.GradScaler | None
    ema_decay: float | None
    ema_warmup: bool

    def _init_update_state(self) -> None:
        self.ema: ModelEmaV3 | None = None
        self._ema_steps: Tensor | int = 0
        self._skipped: Tensor | int = 0
        self._skipped_seen = 0
        self._warned: set[str] = set()

    @property
    def ema_steps(self) -> int:
        """Optimizer steps the EMA teacher has averaged (its warm-up clock).

        Counted on the device; reading it waits for the device."""
        return int(self._ema_steps)

    @ema_steps.setter
    def ema_steps(self, value: int) -> None:
        self._ema_steps = int(value)

    @property
    def skipped_steps(self) -> int:
        """Training steps skipped because the loss or gradients were NaN or inf.

        Counted on the device; reading it waits for the device (the strategy
        reads it once per epoch, to warn)."""
        return int(self._skipped)

    def _warn_skipped_steps(self) -> None:
        """Warn (once) if the count of skipped steps grew; once per epoch."""
        count = self.skipped_steps
        if count > self._skipped_seen:
            warn_once(
                self._warned,
                "loss",
                "the training loss or its gradients are NaN or inf: the optimizer "
                "step is skipped (count in strategy.skipped_steps); check the inputs "
                "for NaN/inf, or lower the learning rate",
            )
        self._skipped_seen = count

    def _after_training_epoch(self, **kwargs):
        self._warn_skipped_steps()
        super()._after_training_epoch(**kwargs)

    # ---------------------------------------------------------------- forward
    def _autocast(self):
        return torch.autocast(
            self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None
        )

    def model_forward(self, x: Tensor, model: nn.Module | None = None) -> Tensor:
        """Run ``model`` (default the trained model) with the strategy's AMP and
        memory format; returns float32 logits.

        An extension point: a plugin's extra forward (e.g. CalibrateMix's
        mixed samples in ``"fast"`` mode) runs exactly like the main one.
        """
        model = self.model if model is None else model
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            out = model(x)
        return out.float()

    # --------------------------------------------------------------- backward
    def backward(self):
        if self.scaler is not None:
            self.scaler.scale(self.loss).backward(retain_graph=self.retain_graph)
        else:
            super().backward()

    def _step_is_finite(self) -> Tensor:
        """Loss and gradients are finite, as a bool tensor on the device. A NaN
        input anywhere in the joint forward makes the weight gradients NaN even
        when its loss weight is 0, so the gradients are checked, not only the
        loss."""
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        ok = torch.isfinite(self.loss.detach()).all()
        if grads:
            ok = ok & torch.isfinite(torch.nn.utils.get_total_norm(grads))
        return ok

    def optimizer_step(self):
        """The optimizer step (and EMA update); a step whose loss or gradients
        hold NaN or inf is skipped, so the weights stay finite (with fp16 AMP
        the scaler does this).

        Decided on the device: the parameters and the optimizer state are
        saved before the step and put back with ``torch.where`` if it was not
        finite (one more copy of them in memory), the EMA teacher averages
        the unchanged model, and the skip is counted on the device
        (:attr:`skipped_steps`, read and warned about once per epoch). A step
        that creates optimizer state (the first one after the optimizer is
        reset, once per experience) or whose state is not all tensors on the
        parameters' device (e.g. Adam's ``step`` on the host unless
        ``capturable=True`` or ``fused=True``) reads the check on the host
        instead.
        """
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self._update_ema(None)
            return
        ok = self._step_is_finite()
        self._skipped = self._skipped + (~ok).long()
        applied = self._guarded_step(ok)
        if applied is not False:
            self._update_ema(ok if applied is None else None)

    @torch.no_grad()
    def _guarded_step(self, ok: Tensor) -> bool | None:
        """The optimizer step, undone where ``ok`` is False: ``None`` if decided
        on the device, else whether the step was kept (read on the host)."""
        state = self.optimizer.state
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        saved = [(p.detach().clone(), _copy_state(state.get(p, {}))) for p in params]
        super().optimizer_step()
        on_device = all(
            _same_device_state(p, old, state.get(p, {}))
            for p, (_, old) in zip(params, saved)
        )
        if not on_device:
            if bool(ok):
                return True
            for p, (value, old) in zip(params, saved):
                p.copy_(value)
                if old:
                    state[p] = old
                else:
                    state.pop(p, None)
            return False
        for p, (value, old) in zip(params, saved):
            p.copy_(torch.where(ok, p, value))
            for key, v in state.get(p, {}).items():
                v.copy_(torch.where(ok, v, old[key]))
        return None

    # -------------------------------------------------------------------- EMA
    @torch.no_grad()
    def _update_ema(self, ok: Tensor | None) -> None:
        """Average the model into the EMA teacher (timm's ``ModelEmaV3``
        update, with the warm-up clock on the device); where ``ok`` is False
        the teacher and its clock stay as they were."""
        ema = self.ema
        if ema is None:
            return
        values = list(ema.module.state_dict().values())
        if not values:
            return
        device = values[0].device
        if isinstance(self._ema_steps, int):
            self._ema_steps = torch.full(
                (), self._ema_steps, dtype=torch.long, device=device
            )
        self._ema_steps = self._ema_steps + (1 if ok is None else ok.long())
        ema_values, model_values = [], []
        for e, m in zip(values, self.model.state_dict().values()):
            m = m.to(device=e.device)
            if ok is not None:
                m = torch.where(ok, m, e)  # a skipped step averages e into e
            if e.is_floating_point():
                ema_values.append(e)
                model_values.append(m)
            else:
                e.copy_(m)
        if not self.ema_warmup:
            ema._foreach_lerp_(ema_values, model_values, weight=1.0 - ema.decay)
            return
        weight = 1.0 - _warmup_decay(ema, self._ema_steps)
        for dtype in {e.dtype for e in ema_values}:
            pairs = [
                (e, m) for e, m in zip(ema_values, model_values) if e.dtype == dtype
            ]
            w = weight.to(dtype)
            torch._foreach_lerp_(
                [e for e, _ in pairs],
                [m.to(dtype) for _, m in pairs],
                [w] * len(pairs),
            )

    def _new_ema(self) -> ModelEmaV3:
        """A fresh EMA teacher of the current model."""
        return ModelEmaV3(
            self.model,
            decay=0.999 if self.ema_decay is None else self.ema_decay,
            use_warmup=self.ema_warmup,
        )

    def _sync_ema(self) -> None:
        """Create the EMA teacher, or rebuild it if the model's shapes changed.

        On a rebuild (e.g. a grown classifier) tensors whose shape is unchanged
        keep their EMA values; the others start from the current model.
        """
        model_state = self.model.state_dict()
        if self.ema is not None:
            ema_state = self.ema.module.state_dict()
            same = ema_state.keys() == model_state.keys() and all(
                ema_state[k].shape == v.shape for k, v in model_state.items()
            )
            if same:
                return
        old = None if self.ema is None else self.ema.module.state_dict()
        self.ema = self._new_ema()
        if old is not None:
            merged = {
                k: (old[k] if k in old and old[k].shape == v.shape else v)
                for k, v in self.ema.module.state_dict().items()
            }
            self.ema.module.load_state_dict(merged)

    def _eval_model(self) -> nn.Module:
        """The model evaluated: the EMA teacher if any, else the trained model."""
        return self.ema.module if self.ema is not None else self.model


def _copy_state(state: dict) -> dict:
    """A copy of one parameter's optimizer state (tensors cloned)."""
    return {
        k: v.detach().clone() if isinstance(v, Tensor) else copy.deepcopy(v)
        for k, v in state.items()
    }


def _same_device_state(p: Tensor, old: dict, new: dict) -> bool:
    """The step left ``p``'s optimizer state with the same keys, all tensors on
    ``p``'s device (so ``torch.where`` can put it back)."""
    return new.keys() == old.keys() and all(
        isinstance(v, Tensor) and v.device == p.device for v in new.values()
    )


def _warmup_decay(ema: ModelEmaV3, steps: Tensor) -> Tensor:
    """``ModelEmaV3.get_decay(steps)`` with warm-up, computed on the device
    (float64 where the device has it)."""
    dtype = torch.float32 if steps.device.type == "mps" else torch.float64
    s = (steps.to(dtype) - ema.update_after_step - 1).clamp_min(0)
    decay = 1 - (1 + s / ema.warmup_gamma) ** -ema.warmup_power
    decay = decay.clamp(max=ema.decay).clamp(min=ema.min_decay)
    return torch.where(s > 0, decay, torch.zeros_like(decay))


__all__ = ["AmpEmaUpdate", "resolve_amp_dtype", "warn_once"]
