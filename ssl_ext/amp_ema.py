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
  skipped (counted in ``skipped_steps``, warned once), so the weights stay
  finite; after each step, the EMA teacher (``timm.utils.ModelEmaV3``) is
  updated;
* :meth:`~AmpEmaUpdate._sync_ema`: create the teacher, or rebuild it when the
  model's shapes changed (a grown classifier) keeping what still fits.

The host sets, in its constructor, ``amp_dtype`` (:func:`resolve_amp_dtype`),
``channels_last``, ``scaler``, ``ema_decay``, ``ema_warmup``, and calls
:meth:`~AmpEmaUpdate._init_update_state`.
"""

from __future__ import annotations

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
        self.ema_steps = 0
        """Optimizer steps the EMA teacher has averaged (its warm-up clock)."""
        self.skipped_steps = 0
        """Training steps skipped because the loss or gradients were NaN or inf."""
        self._warned: set[str] = set()

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

    def _step_is_finite(self) -> bool:
        """Loss and gradients are finite (one host sync). A NaN input anywhere in
        the joint forward makes the weight gradients NaN even when its loss
        weight is 0, so the gradients are checked, not only the loss."""
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        ok = torch.isfinite(self.loss.detach())
        if grads:
            ok = ok & torch.isfinite(torch.nn.utils.get_total_norm(grads))
        return bool(ok)

    def optimizer_step(self):
        """The optimizer step (and EMA update); a step whose loss or gradients
        hold NaN or inf is skipped with a warning (once), so the weights stay
        finite (with fp16 AMP the scaler does this)."""
        if self.scaler is None and not self._step_is_finite():
            self.skipped_steps += 1
            warn_once(
                self._warned,
                "loss",
                "the training loss or its gradients are NaN or inf: the optimizer "
                "step is skipped (count in strategy.skipped_steps); check the inputs "
                "for NaN/inf, or lower the learning rate",
            )
            return
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            super().optimizer_step()
        if self.ema is not None:
            self.ema_steps += 1
            self.ema.update(
                self.model, step=self.ema_steps if self.ema_warmup else None
            )

    # -------------------------------------------------------------------- EMA
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


__all__ = ["AmpEmaUpdate", "resolve_amp_dtype", "warn_once"]
