"""The parts of :class:`~avalanche_mixplugins.plugins.GradMixPlugin` around its step.

What GradMix shows (:class:`GradMixInspection`: the pair scores, the helpful
pairs and their fraction, published to the loggers every epoch), where its
closed form reads the head's inputs and logits (:class:`HeadFeatures`, for
``grad_space="last"``), the distributed sum of its evidence, and the checks
of its setup: a model whose layer taken as the head does not compute the
logits (:func:`check_head_output`), a strategy without replay
(:func:`check_has_replay`, :func:`warn_no_buffer`).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from avalanche.distributed import DistributedHelper
from avalanche.evaluation.metric_results import MetricValue
from avalanche.models.utils import avalanche_forward
from torch import Tensor, nn

from avalanche_mixplugins.head import HeadCapture, find_linear_head

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate

    from avalanche_mixplugins.plugins.base import MixingStepBatch


def all_reduce_sum(*tensors: Tensor) -> None:
    """Sum tensors in place over all ranks when training is distributed.

    The world size comes from Avalanche's ``DistributedHelper``; the sum is
    ``torch.distributed.all_reduce``, which the helper does not wrap.
    """
    if DistributedHelper.world_size > 1:
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)


class GradMixInspection:
    """What GradMix decided, read from its pair policy (``self.policy``)."""

    @property
    def pair_scores(self) -> Tensor:
        """The smoothed ``C x C`` class-pair score matrix (a CPU copy).

        Each pair's own evidence; with ``kind_prior``, a pair without
        evidence in the current experience is judged by its kind's score
        instead (``policy.effective()``).
        """
        return self.policy.scores.detach().cpu().clone()

    @property
    def scored_pairs(self) -> Tensor:
        """Bool ``C x C``: pairs that have received evidence."""
        return self.policy.seen.cpu().clone()

    def helpful_pairs(self) -> list[tuple[int, int, float]]:
        """Class pairs ``(a, b, score)``, ``a <= b``, currently scored helpful."""
        return self.policy.helpful_pairs()

    def helpful_fraction(self) -> float:
        """Fraction of scored class pairs that are helpful (NaN before any)."""
        return self.policy.helpful_fraction()

    def after_training_epoch(self, strategy: SupervisedTemplate, **kwargs):
        super().after_training_epoch(strategy, **kwargs)
        # Published before the evaluator's own after_training_epoch, which hands
        # it to every logger (printed by the InteractiveLogger with the epoch's
        # metrics, written by TensorBoard-style loggers; Avalanche's CSVLogger
        # has fixed columns and leaves it out).
        frac = self.helpful_fraction()
        evaluator = getattr(strategy, "evaluator", None)
        if evaluator is not None and frac == frac:  # not NaN
            evaluator.publish_metric_value(
                MetricValue(
                    self,
                    "GradMix_HelpfulPairs/train_phase/train_stream",
                    frac,
                    strategy.clock.train_iterations,
                )
            )


def _has_replay(strategy: SupervisedTemplate) -> bool:
    """Whether the strategy or one of its plugins keeps a non-empty buffer."""
    for owner in (strategy, *getattr(strategy, "plugins", ())):
        policy = getattr(owner, "storage_policy", None)
        if policy is not None and getattr(policy, "max_size", 1) > 0:
            return True
    return False


NO_REPLAY = (
    "GradMix scores class pairs against the gradient of replayed previous-class "
    "samples, and {what}, so it would never mix: add ReplayPlugin(mem_size=500) "
    "to the strategy's plugins or use a replay strategy (ER_ACE, ER_AML, DER), "
    "or use MixupPlugin for mixing without replay"
)


def check_has_replay(strategy: SupervisedTemplate) -> None:
    """Warn before training when the strategy has no replay buffer at all."""
    if not _has_replay(strategy):
        what = (
            f"{type(strategy).__name__} has no replay buffer (none, or one of size 0)"
        )
        warnings.warn(NO_REPLAY.format(what=what), RuntimeWarning, stacklevel=3)


def warn_no_buffer(has_previous: bool, buffer_steps: int) -> bool:
    """Warn when a whole experience with previous classes had no buffer sample.

    :return: whether the warning was given.
    """
    if not has_previous or buffer_steps:
        return False
    what = "it saw no buffer sample in this experience (the replay buffer is empty)"
    warnings.warn(NO_REPLAY.format(what=what), RuntimeWarning, stacklevel=4)
    return True


def check_head_output(
    model: nn.Module, name: str, head: nn.Linear, record: list, output
) -> None:
    """Refuse a head that did not compute the logits of the strategy's forward.

    :param name: the head's name in ``model``; ``head`` the layer.
    :param record: the :class:`~avalanche_mixplugins.head.HeadCapture`
        record of that forward (``[x, h, z]``, ``h`` is ``None`` when the
        head was not called).
    :param output: the model's output on the minibatch.
    :raises ValueError: saying which layer was taken, why it is not the
        classifier, and how to name the right one.
    """
    width = output.shape[-1] if isinstance(output, Tensor) else None
    if record[1] is not None:
        if width is None or width == head.out_features:
            return
        why = (
            f"it outputs {head.out_features} features but the model outputs "
            f"{width} logits"
        )
    else:
        why = "the model's forward never called it, so it produced no output"
    how = (
        "its get_classifier()"
        if callable(getattr(model, "get_classifier", None))
        else f"the last nn.Linear registered in {type(model).__name__}"
    )
    fits = [
        key
        for key, mod in model.named_modules()
        if isinstance(mod, nn.Linear) and mod.out_features == width and key != name
    ]
    hint = f" (here: head={fits[0]!r})" if len(fits) == 1 else ""
    raise ValueError(
        f"GradMix (grad_space='last') took {name!r}, {how}, as the classification "
        f"head, but {why}: it is not the layer that computes the logits. Name the "
        f"classifier with GradMixPlugin(head='<layer name>'){hint}, or give the "
        "model a get_classifier() method that returns it; grad_space='full' needs "
        "no head"
    )


class _StepCapture(HeadCapture):
    """:class:`~avalanche_mixplugins.head.HeadCapture` that detaches the
    head's output only when the model's output does not take its place.

    The logits GradMix reads are the model's output when it has the head's
    shape (:meth:`HeadCapture.lookup`); detaching the head's output as well
    would be one more tensor operation per forward for a tensor then dropped.
    """

    def _on_head(self, module, args, output):
        if not self.enabled or not args or not self.records:
            return
        self.records[-1][1] = args[0].detach()
        self.records[-1][2] = output  # detached when the model returns

    def _on_model_return(self, module, args, output):
        rec = self.records[-1] if self.enabled and self.records else None
        if rec is None or rec[2] is None:
            return
        if isinstance(output, Tensor) and output.shape == rec[2].shape:
            rec[2] = output.detach()
        elif rec[2].requires_grad:
            rec[2] = rec[2].detach()


class HeadFeatures:
    """The head's inputs and logits of a GradMix step (``grad_space="last"``).

    A :class:`~avalanche_mixplugins.head.HeadCapture` on the layer taken as
    the classification head (``self.head``, see
    :func:`~avalanche_mixplugins.head.find_linear_head`) records them during
    the strategy's own forward and the mixed forward. It is attached for each
    experience, records only inside training iterations, and at the first
    step the layer is checked to compute the logits
    (:func:`check_head_output`). It reads the plugin's ``grad_space``,
    ``head``, ``_capture`` and ``_warned_fallback``, which the plugin's
    constructor sets.
    """

    def _attach_head(self, strategy: SupervisedTemplate) -> None:
        """Hook the head of ``strategy.model`` for the experience that starts."""
        self._detach_head()
        if self.grad_space == "last":
            self._head = find_linear_head(strategy.model, self.head)
            self._head_has_bias = self._head[1].bias is not None
            self._capture = _StepCapture(strategy.model, self._head[1])
            self._capture.enabled = False
            self._check_head = True

    def _detach_head(self) -> None:
        if self._capture is not None:
            self._capture.remove()
            self._capture = None

    def after_forward(self, strategy: SupervisedTemplate, **kwargs):
        super().after_forward(strategy, **kwargs)
        # at the first step: the layer taken as the head must compute the logits
        if self._capture is not None and self._check_head and strategy.is_training:
            self._check_head = False
            calls = [r for r in self._capture.records if r[0] is strategy.mb_x]
            if calls:
                check_head_output(
                    strategy.model, *self._head, calls[-1], strategy.mb_output
                )

    def before_training_iteration(self, strategy: SupervisedTemplate, **kwargs):
        if self._capture is not None:
            self._capture.clear()
            self._capture.enabled = True

    def after_training_iteration(self, strategy: SupervisedTemplate, **kwargs):
        if self._capture is not None:
            self._capture.clear()
            self._capture.enabled = False

    def _pool_features(
        self, strategy: SupervisedTemplate, batch: MixingStepBatch
    ) -> tuple[Tensor, Tensor]:
        """Head inputs and logits of the pool's samples, from the strategy's forward."""
        parts = [strategy.mb_x]
        extra = self.extra_buffer(strategy)
        if extra is not None:
            parts.append(extra[0])
        found = [self._capture.lookup(p) for p in parts]
        if any(f is None for f in found):
            if not self._warned_fallback:
                warnings.warn(
                    "GradMix could not find the strategy's forward of this batch; "
                    "it runs an extra no-grad forward for the buffer features",
                    stacklevel=2,
                )
                self._warned_fallback = True
            with torch.no_grad():
                avalanche_forward(strategy.model, batch.x, batch.t)
            h, z = self._capture.lookup(batch.x)
            return h, z
        if len(found) == 1:
            return found[0]
        h = torch.cat([f[0] for f in found])
        z = torch.cat([f[1] for f in found])
        return h, z

    def _mixed_features(self, batch: MixingStepBatch) -> tuple[Tensor, Tensor]:
        """Head inputs and logits of the candidates, from the mixed forward."""
        found = self._capture.lookup(batch.x_mix)
        if found is None:
            raise RuntimeError(
                "the mixed forward did not pass through the model's head"
            )
        return found


__all__ = [
    "GradMixInspection",
    "HeadFeatures",
    "all_reduce_sum",
    "check_has_replay",
    "check_head_output",
    "warn_no_buffer",
]
