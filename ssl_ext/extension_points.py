"""The named extension points of the semi-supervised strategy.

What a plugin may call on a :class:`~ssl_ext.strategy.SemiSupervisedStrategy`
to take part in a training iteration, beside the per-iteration attributes
listed in :mod:`ssl_ext.strategy` (CalibrateMix, arXiv:2511.12964, uses only
these):

* :meth:`~ExtensionPoints.add_forward_input` (in ``before_forward``): extra
  inputs in the main joint forward; their logits are in
  ``mb_extra_output[name]`` from ``after_forward`` on;
* ``model_forward`` (:mod:`ssl_ext.amp_ema`): a forward of some inputs alone,
  with the main pass's autocast and memory format;
* :meth:`~ExtensionPoints.second_pass` (in ``before_backward``): the base
  step again, with gradients, with extra inputs in its joint forward; returns
  their logits and the recomputed base loss. Its two halves are
  :meth:`~ExtensionPoints.forward_parts` (one forward of concatenated parts)
  and :meth:`~ExtensionPoints.ssl_loss` (pseudo-labels and base loss of one
  pass's logits);
* ``gather_from_ranks`` (:mod:`ssl_ext.pseudo_labelling`): rows of every
  rank, for per-sample tables that must be identical under
  ``torch.distributed``.

A plugin adds its own loss term to ``strategy.loss`` in ``before_backward``.
The base loss of the main pass, ``base_loss = sup_loss + lambda_u *
unsup_loss``, is the strategy's ``criterion``; one method defines it for
both passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ssl_ext.algorithms import PseudoLabels, consistency_loss


class SSLLoss(NamedTuple):
    """Base SSL loss of one pass: ``loss = sup_loss + lambda_u * unsup_loss``."""

    loss: Tensor
    sup_loss: Tensor
    unsup_loss: Tensor
    pseudo: PseudoLabels


class SecondPass(NamedTuple):
    """Result of :meth:`ExtensionPoints.second_pass`.

    :param outputs: logits of each extra input, by name.
    :param base: the base loss recomputed on the pass's logits, or ``None``
        when it was not asked for.
    """

    outputs: dict[str, Tensor]
    base: SSLLoss | None


class ExtensionPoints:
    """Template mixin: the methods a plugin calls during a training iteration."""

    def _check_extra_input(self, name: str, x: Tensor) -> None:
        if x.shape[1:] != self.mb_x.shape[1:]:
            raise ValueError(
                f"extra input {name!r} has sample shape {tuple(x.shape[1:])}, "
                f"expected {tuple(self.mb_x.shape[1:])}"
            )

    def add_forward_input(self, name: str, x: Tensor) -> None:
        """Add inputs to this iteration's joint forward (call in ``before_forward``).

        Their logits are ``mb_extra_output[name]`` after the forward.

        :param name: key of the extra batch (unique within the iteration).
        :param x: inputs shaped like the labeled batch but for the first dim.
        """
        if not self.is_training:
            raise RuntimeError("extra forward inputs are for training iterations")
        if name in self.mb_extra_x:
            raise ValueError(f"an extra input named {name!r} was already added")
        self._check_extra_input(name, x)
        self.mb_extra_x[name] = x

    def forward_parts(
        self, *parts: Tensor, model: nn.Module | None = None
    ) -> tuple[Tensor, ...]:
        """One forward of ``cat(parts)``; returns the logits split like ``parts``.

        This is the joint forward of the main pass, available to plugins for a
        second pass (e.g. ``(labeled, mixed, weak, strong)``).
        """
        sizes = [p.shape[0] for p in parts]
        return self.model_forward(torch.cat(parts), model).split(sizes)

    def _combine(
        self, logits_lb: Tensor, y_lb: Tensor, logits_strong: Tensor, pseudo
    ) -> SSLLoss:
        """``CE(labeled) + lambda_u * consistency(strong, pseudo-labels)``."""
        sup = self._criterion(logits_lb, y_lb)
        unsup = consistency_loss(logits_strong, pseudo.targets, pseudo.weights)
        return SSLLoss(sup + self.lambda_u * unsup, sup, unsup, pseudo)

    def ssl_loss(
        self,
        logits_lb: Tensor,
        y_lb: Tensor,
        logits_weak: Tensor,
        logits_strong: Tensor,
        ulb_index: Tensor | None = None,
        *,
        update: bool = True,
    ) -> SSLLoss:
        """The base SSL loss of one pass (e.g. a plugin's second forward).

        :param update: update the algorithm's running statistics.
        """
        pseudo = self.pseudo_label(logits_weak, ulb_index, update=update)
        return self._combine(logits_lb, y_lb, logits_strong, pseudo)

    def second_pass(
        self,
        inputs: Mapping[str, Tensor],
        *,
        base_loss: bool = True,
        update_statistics: bool = True,
    ) -> SecondPass:
        """Run the base step again, with gradients (call in ``before_backward``).

        One forward of ``cat(labeled, *inputs, unlabeled weak, unlabeled
        strong)`` of this iteration (the layout of CalibrateMix's released
        second pass), then, with ``base_loss``, the base loss on its logits
        (:meth:`ssl_loss`). The caller adds what it needs to ``loss``.

        :param inputs: extra inputs by name, shaped like the labeled batch but
            for the first dimension.
        :param base_loss: recompute the base loss.
        :param update_statistics: let that recomputation update the
            algorithm's running statistics (as a second step of the method).
        """
        for name, x in inputs.items():
            self._check_extra_input(name, x)
        logits = self.forward_parts(
            self.mb_x, *inputs.values(), self.mb_ulb_weak, self.mb_ulb_strong
        )
        outputs = dict(zip(inputs, logits[1:-2]))
        base = None
        if base_loss:
            base = self.ssl_loss(
                logits[0],
                self.mb_y,
                logits[-2],
                logits[-1],
                self.mb_ulb_index,
                update=update_statistics,
            )
        return SecondPass(outputs, base)


__all__ = ["ExtensionPoints", "SSLLoss", "SecondPass"]
