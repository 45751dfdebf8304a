"""Where the last linear layer is, and what goes into it.

GradMix scores candidates with the closed-form gradient of the model's last
linear layer (:mod:`avalanche_mixplugins.gradients`), which needs the head's
input and the logits of every forward of a step. :func:`find_linear_head`
finds the layer; :class:`HeadCapture` records its input and output with a
forward hook during the forwards the strategy runs anyway. Pure PyTorch, no
Avalanche import.
"""

from __future__ import annotations

from torch import Tensor, nn


def find_linear_head(
    model: nn.Module, name: str | None = None
) -> tuple[str, nn.Linear]:
    """Find the classification head of ``model``.

    ``name`` names it (a key of ``model.named_modules()``; a wrapper's
    ``module.`` prefix is added when needed). Without it, timm models answer
    ``get_classifier()``; other models use their last ``nn.Linear`` in
    registration order (like Avalanche's ``get_last_fc_layer``).

    :return: ``(name, module)``.
    :raise ValueError: if the model has no linear layer, or ``name`` is not
        one of its linear layers (the message lists them).
    """
    if name is not None:
        modules = dict(model.named_modules())
        for key in (name, f"module.{name}"):
            if isinstance(modules.get(key), nn.Linear):
                return key, modules[key]
        linear = [k for k, m in modules.items() if isinstance(m, nn.Linear)]
        raise ValueError(
            f"head={name!r} is not an nn.Linear layer of {type(model).__name__}; "
            f"its linear layers are {linear or 'none'}"
        )
    getter = getattr(model, "get_classifier", None)
    if callable(getter):
        head = getter()
        if isinstance(head, nn.Linear):
            for name, mod in model.named_modules():
                if mod is head:
                    return name, head
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            last = (name, mod)
    if last is None:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear classification head, which "
            'grad_space="last" needs; use grad_space="full" (exact per-sample '
            "gradients of all parameters) for this model"
        )
    return last


class HeadCapture:
    """Record the input and output of a model's head at every model call.

    A forward pre-hook on the model notes the input tensor of each call; a
    forward hook on the head attaches the head's input ``h`` and output ``z``
    (both detached) to that call. :meth:`lookup` then finds the features of a
    given input batch by identity, so the features of a forward that already
    ran (the strategy's own) are reused instead of computed again.

    :param model: the whole model.
    :param head: its linear head (see :func:`find_linear_head`).
    """

    def __init__(self, model: nn.Module, head: nn.Module):
        self.model = model
        self.head = head
        self.enabled = True
        self.records: list[list] = []
        self._handles = [
            model.register_forward_pre_hook(self._on_model_call),
            head.register_forward_hook(self._on_head),
            model.register_forward_hook(self._on_model_return),
        ]

    def _on_model_call(self, module, args):
        if self.enabled and args:
            self.records.append([args[0], None, None])

    def _on_head(self, module, args, output):
        if not self.enabled or not args or not self.records:
            return
        self.records[-1][1] = args[0].detach()
        self.records[-1][2] = output.detach()

    def _on_model_return(self, module, args, output):
        # The logits of the loss are the model's output (a masking layer, as in
        # Avalanche's IncrementalClassifier, may follow the linear head).
        rec = self.records[-1] if self.enabled and self.records else None
        if rec is not None and isinstance(output, Tensor) and rec[2] is not None:
            if output.shape == rec[2].shape:
                rec[2] = output.detach()

    def lookup(self, x: Tensor) -> tuple[Tensor, Tensor] | None:
        """``(h, logits)`` recorded for the model call on ``x``, or ``None``.

        ``logits`` is the model's output when it has the head's shape, else
        the head's output.
        """
        for rec in reversed(self.records):
            if rec[0] is x and rec[1] is not None:
                return rec[1], rec[2]
        return None

    def clear(self) -> None:
        self.records.clear()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.records.clear()


__all__ = ["HeadCapture", "find_linear_head"]
