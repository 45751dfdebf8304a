"""The adapter shared by every mixing plugin.

:class:`MixingPlugin` finds, for each Avalanche replay strategy, the samples
trained on in the current iteration and which of them are previous-task
(buffer) samples, asks a pair policy for partners, mixes the inputs, runs one
forward of the mixed batch and adds the mixed-sample loss to
``strategy.loss`` in ``before_backward``. That hook composes with every
strategy's own objective and with other plugins that add loss terms.

Where the samples are, per strategy (Avalanche 0.6):

* ``Naive`` + ``ReplayPlugin`` (and ``Replay``-style loaders): the minibatch
  holds current and memory samples together;
* ``ER_ACE`` / ``ER_AML``: the minibatch holds current samples, the buffer
  samples of the step are ``strategy.mb_buffer_x`` / ``mb_buffer_y``;
* ``DER``: the strategy prepends buffer samples to the minibatch after the
  plugins' ``before_forward``; at ``before_backward`` they are in it.

Previous-task samples are recognised by label: classes not in
``strategy.experience.classes_in_this_experience`` (class-incremental
streams).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from avalanche.core import SupervisedPlugin
from avalanche.models.utils import avalanche_forward
from torch import Tensor

from avalanche_mixplugins.deprecation import moved_names
from avalanche_mixplugins.mixing import (
    ASYMMETRIC_MODES,
    MIX_MODES,
    apply_mix,
    current_only_mask,
    mixed_cross_entropy,
    sample_lambda,
)
from avalanche_mixplugins.pairing import BUFFER_PAIRINGS, PairPolicy, RandomPairs
from avalanche_mixplugins.plugins.misuse import check_setup
from avalanche_mixplugins.validation import (
    check_alpha,
    check_fraction,
    check_label_range,
    check_one_of,
    check_weight,
)

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate


@dataclass
class MixingStepBatch:
    """Everything about one training step's mixed samples (all tensors on device).

    Built by :meth:`MixingPlugin.mixed_batch`, read by the policy hooks and
    kept for inspection as ``plugin.last_batch``.
    """

    x: Tensor
    """Inputs of the pool the pairs are drawn from, ``(N, ...)``."""
    y: Tensor
    """Their integer labels ``(N,)``."""
    t: Tensor
    """Their task labels ``(N,)``."""
    is_buffer: Tensor
    """Bool ``(N,)``: previous-task samples."""
    partner: Tensor
    """Long ``(N,)``: partner of each sample."""
    active: Tensor
    """Bool ``(N,)``: the sample had an admissible partner."""
    lam: Tensor
    """``(N,)`` weight of each sample's own label (CutMix: area-corrected)."""
    x_mix: Tensor
    """Mixed inputs ``(N, ...)``."""
    logits: Tensor
    """Model output on ``x_mix`` (with ``logit_mask`` applied)."""
    logit_mask: Tensor | None = None
    """Bool ``(N, C)``: logits left out of a candidate's softmax (asymmetric
    cross-entropy, see :class:`MixingPlugin`), or ``None``."""


class MixingPlugin(SupervisedPlugin, supports_distributed=True):
    """Base of the mixing plugins: adds a mixed-sample loss in ``before_backward``.

    The mixed loss of a step is the sum over mixed samples that count
    (see :meth:`sample_weights`) of
    ``lam * CE(f(x~), y_i) + (1 - lam) * CE(f(x~), y_j)``, divided by the
    number of candidates (samples that had a partner, see
    :meth:`loss_denominator`), and added to the strategy's loss as
    ``strategy.loss += weight * mixed_loss``.

    :param policy: the pair-selection policy.
    :param mix: ``"mixup"`` (interpolate inputs) or ``"cutmix"`` (paste a box).
    :param alpha: ``lam ~ Beta(alpha, alpha)``.
    :param prob: chance that an iteration adds a mixed loss at all.
    :param weight: weight of the mixed loss added to the strategy's loss.
    :param asymmetric: ``"current"`` (or ``True``): score candidates mixed
        from two current samples over the current classes only (asymmetric
        cross-entropy, as ER-ACE and ER-AML train their current samples), so
        the mixed loss does not undo what those strategies protect;
        ``"both"``: in addition, candidates mixed from two buffer samples
        are scored without the current classes, so they do not push the new
        classes' logits down either; ``"all"``: in addition, a candidate
        mixed from a current and a buffer sample is scored over the current
        classes and its buffer source's class only; ``False``: every
        candidate keeps every logit. ``None`` (default):
        :attr:`default_asymmetric` for ``ER_ACE`` and ``ER_AML``, off
        otherwise.
    :param seed: seed of the plugin's own random generator (pairs, ``lam``,
        boxes); ``None`` draws it from torch's global generator, so
        ``torch.manual_seed`` before building the plugin makes runs repeat.
    """

    def __init__(
        self,
        *,
        policy: PairPolicy,
        mix: str = "mixup",
        alpha: float = 1.0,
        prob: float = 1.0,
        weight: float = 1.0,
        asymmetric: bool | str | None = None,
        seed: int | None = None,
    ):
        super().__init__()
        check_one_of("mix", mix, MIX_MODES)
        if not isinstance(policy, PairPolicy):
            raise ValueError(
                f"policy must be a PairPolicy, got {type(policy).__name__}"
            )
        self.policy = policy
        self.mix = mix
        self.alpha = check_alpha(alpha)
        self.prob = check_fraction("prob", prob)
        self.weight = check_weight(weight)
        if asymmetric is not None and not (
            isinstance(asymmetric, bool) or asymmetric in ASYMMETRIC_MODES
        ):
            raise ValueError(
                "asymmetric must be None, True, False, 'current', 'both' or 'all', "
                f"got {asymmetric!r}"
            )
        self.asymmetric = asymmetric
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        self.generator = torch.Generator().manual_seed(int(seed))
        self.last_loss: Tensor | None = None
        self.last_batch: MixingStepBatch | None = None
        """The last step's mixed batch (inputs, partners, ``lam``, logits), for inspection."""
        self.last_weights: Tensor | None = None
        """The last step's per-sample weights in the mixed loss (see :meth:`sample_weights`)."""
        self._current: Tensor | None = None
        self._current_classes: list[int] = []
        self._seen_classes: set[int] = set()
        self._has_previous = False
        self._check_labels = True
        self._check_output = True
        self._skipped = 0

    # -- which samples ------------------------------------------------------
    def before_training(self, strategy: SupervisedTemplate, **kwargs):
        # setups that cannot work as meant, said before the first step
        check_setup(self, strategy)

    def before_training_exp(self, strategy: SupervisedTemplate, **kwargs):
        classes = sorted(int(c) for c in strategy.experience.classes_in_this_experience)
        self._current_classes = classes
        self._current = torch.tensor(classes, dtype=torch.long, device=strategy.device)
        self._check_labels = True
        self._check_output = True
        self._has_previous = bool(self._seen_classes - set(classes))

    def after_forward(self, strategy: SupervisedTemplate, **kwargs):
        # before the strategy's criterion, whose own error would not say what to do
        out = strategy.mb_output
        if strategy.is_training and self._check_output and isinstance(out, Tensor):
            self._check_output = False
            if out.dim() == 2:
                check_label_range(strategy.mb_y, out.shape[1])

    def after_training_exp(self, strategy: SupervisedTemplate, **kwargs):
        self._seen_classes.update(
            int(c) for c in strategy.experience.classes_in_this_experience
        )

    @staticmethod
    def extra_buffer(strategy: SupervisedTemplate) -> tuple | None:
        """Buffer samples a strategy keeps outside the minibatch (ER-ACE, ER-AML)."""
        if getattr(strategy, "replay_loader", None) is None:
            return None
        bx = getattr(strategy, "mb_buffer_x", None)
        if bx is None:
            return None
        return bx, strategy.mb_buffer_y, strategy.mb_buffer_tid

    def training_samples(
        self, strategy: SupervisedTemplate
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(x, y, task_labels, is_buffer)`` of the samples trained on this step."""
        x, y, t = strategy.mb_x, strategy.mb_y, strategy.mb_task_id
        extra = self.extra_buffer(strategy)
        if extra is not None:
            x = torch.cat([x, extra[0]])
            y = torch.cat([y, extra[1]])
            t = torch.cat([t, extra[2]])
        if self._current is None or self._current.device != y.device:
            classes = strategy.experience.classes_in_this_experience
            self._current = torch.tensor(sorted(classes), device=y.device)
        is_buffer = ~torch.isin(y, self._current)
        return x, y, t, is_buffer

    default_asymmetric: str = "current"
    """The asymmetric mode ``asymmetric=None`` resolves to under ER-ACE / ER-AML."""

    def _asymmetric(self, strategy: SupervisedTemplate) -> str | None:
        """The asymmetric mode of this strategy: ``"current"``, ``"both"`` or ``None``."""
        mode = self.asymmetric
        if mode is None:
            from avalanche.training import ER_ACE, ER_AML

            if not isinstance(strategy, (ER_ACE, ER_AML)):
                return None
            return self.default_asymmetric
        if mode is True:
            return "current"
        return mode or None

    # -- policy hooks (overridden by GradMix) --------------------------------
    def select_pairs(
        self, strategy: SupervisedTemplate, y: Tensor, is_buffer: Tensor
    ) -> tuple[Tensor, Tensor] | None:
        """Partners and active mask, or ``None`` to skip mixing this step."""
        if self.policy.pairing in BUFFER_PAIRINGS and not self._has_previous:
            return None
        return self.policy.select(y, is_buffer, generator=self.generator)

    def sample_weights(
        self, strategy: SupervisedTemplate, batch: MixingStepBatch
    ) -> Tensor:
        """Weight of each mixed sample in the mixed loss (default: active ones)."""
        return batch.active.float()

    def loss_denominator(self, batch: MixingStepBatch, weights: Tensor) -> Tensor:
        """Normaliser of the mixed loss: the number of candidates (active samples).

        A policy that drops candidates (GradMix) removes their loss instead of
        giving the survivors more weight: with few survivors the mixed term
        shrinks rather than each survivor weighing as much as a whole batch.
        """
        del weights
        return batch.active.float().sum().clamp_min(1.0)

    # -- the step --------------------------------------------------------------
    def mixed_batch(self, strategy: SupervisedTemplate) -> MixingStepBatch | None:
        """Draw pairs and ``lam``, mix, and forward the mixed inputs."""
        x, y, t, is_buffer = self.training_samples(strategy)
        if x.shape[0] < 2:
            return None
        chosen = self.select_pairs(strategy, y, is_buffer)
        if chosen is None:
            return None
        partner, active = chosen
        lam = sample_lambda(self.alpha, x.shape[0], generator=self.generator)
        x_mix, lam_y = apply_mix(
            self.mix, x, partner, lam.to(x.device), generator=self.generator
        )
        logits = avalanche_forward(strategy.model, x_mix, t)
        if self._check_labels:
            # once per experience (one host sync): labels must index the outputs
            self._check_labels = False
            check_label_range(y, logits.shape[1])
        mask = None
        mode = self._asymmetric(strategy)
        if mode is not None:
            mask = current_only_mask(
                y,
                is_buffer,
                partner,
                logits.shape[1],
                lam_y,
                previous_only=mode in ("both", "all"),
                cross=mode == "all",
            )
            logits = logits.masked_fill(mask, float("-inf"))
        return MixingStepBatch(
            x, y, t, is_buffer, partner, active, lam_y, x_mix, logits, mask
        )

    def before_backward(self, strategy: SupervisedTemplate, **kwargs):
        if not strategy.is_training or self.weight == 0.0:
            return
        if (
            self.prob < 1.0
            and float(torch.rand((), generator=self.generator)) >= self.prob
        ):
            return
        batch = self.mixed_batch(strategy)
        if batch is None:
            return
        per_sample = mixed_cross_entropy(
            batch.logits, batch.y, batch.partner, batch.lam, reduction="none"
        )
        w = self.sample_weights(strategy, batch)
        loss = (per_sample * w).sum() / self.loss_denominator(batch, w)
        # A non-finite mixed loss (NaN/inf in the inputs or logits) is left out
        # of the step (one host sync, shared by every plugin); a zero-weighted
        # NaN would still poison the gradients.
        if not bool(torch.isfinite(loss)):
            self._skipped += 1
            if self._skipped == 1:
                warnings.warn(
                    f"{type(self).__name__}: the mixed loss is not finite (NaN or inf "
                    "in the inputs or the logits); the mixed term is skipped for such "
                    "steps (count in plugin.skipped_steps)",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return
        self.last_loss = loss.detach()
        self.last_batch = replace(batch, logits=batch.logits.detach())
        self.last_weights = w.detach()
        strategy.loss = strategy.loss + self.weight * loss

    @property
    def skipped_steps(self) -> int:
        """Iterations whose mixed loss was not finite and was left out."""
        return self._skipped

    # -- state ------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Plain state (tensors, numbers) to resume a run with ``torch.save``."""
        return {
            "generator": self.generator.get_state(),
            "seen_classes": sorted(self._seen_classes),
            "policy": self.policy.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._seen_classes = set(int(c) for c in state["seen_classes"])
        self.policy.load_state_dict(state["policy"])


class RandomMixPlugin(MixingPlugin, supports_distributed=True):
    """Random-pair mixing added to a replay strategy's loss: the Mixup and CutMix baselines.

    Each iteration, every sample of the training batch (current samples and
    the replayed buffer samples, wherever the strategy keeps them) gets a
    uniformly random partner among the admissible ones (:class:`RandomPairs`),
    the pair is mixed with ``lam ~ Beta(alpha, alpha)`` (one per pair) by the
    subclass's operation (:attr:`mix_mode`), and
    ``lam CE(f(x~), y_i) + (1 - lam) CE(f(x~), y_j)``, averaged over the batch,
    is added to the strategy's loss with weight ``weight``. This is the
    random-pair baseline of GradMix (Kim et al., arXiv:2505.08528).

    Works with ``Naive`` + ``ReplayPlugin``, ``ER_ACE``, ``ER_AML``, ``DER`` and
    strategies without a buffer; composes with other plugins in the list.

    :param alpha: Beta concentration (> 0). 1.0 draws ``lam`` uniformly.
    :param prob: chance that an iteration is mixed, in [0, 1].
    :param weight: weight of the mixed loss added to the strategy's loss
        (>= 0). The default 1.0 trains on the original and the mixed batch
        with equal weight.
    :param pairing: ``"all"`` (any two samples), ``"buffer_current"`` (a buffer
        sample with a current one), ``"with_buffer"`` (any pair with a buffer
        sample: all but two current samples; with ``"buffer_current"``,
        nothing is mixed before a buffer exists) or ``"current"`` (current
        samples only).
    :param asymmetric: ``"current"``/``True``, ``"both"``, ``"all"`` or ``False``; see
        :class:`MixingPlugin` (``None``: ``"current"`` for ``ER_ACE`` and
        ``ER_AML``, off otherwise).
    :param seed: seed of the plugin's random generator.
    """

    mix_mode: str
    """The mixing operation, one of :data:`~avalanche_mixplugins.mixing.MIX_MODES`."""

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        prob: float = 1.0,
        weight: float = 1.0,
        pairing: str = "all",
        asymmetric: bool | str | None = None,
        seed: int | None = None,
    ):
        super().__init__(
            policy=RandomPairs(pairing=pairing),
            mix=self.mix_mode,
            alpha=alpha,
            prob=prob,
            weight=weight,
            asymmetric=asymmetric,
            seed=seed,
        )


__getattr__ = moved_names(
    __name__, {"MixedBatch": "avalanche_mixplugins.plugins.base:MixingStepBatch"}
)

__all__ = [
    "ASYMMETRIC_MODES",
    "MixingPlugin",
    "MixingStepBatch",
    "RandomMixPlugin",
    "current_only_mask",
]
