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

import random
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
    mix_by_operation,
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
    operation: Tensor | None = None
    """Long ``(N,)``: each sample's operation (index into
    :data:`~avalanche_mixplugins.mixing.OPERATIONS`) when ``mix="auto"``, or
    ``None`` when one operation mixes the whole batch."""
    finite: Tensor | None = None
    """Bool ``()``: the mixed inputs and the model's output on them were finite
    (``None``: not checked). Non-finite values were replaced by 0 in
    ``x_mix`` and ``logits``, so the step stays finite either way."""


MIX_CHOICES = (*MIX_MODES, "auto")
"""The values of ``mix``: one operation for every pair, or ``"auto"`` (per sample)."""
LOSS_FORMS = ("add", "replace")


class MixingPlugin(SupervisedPlugin, supports_distributed=True):
    """Base of the mixing plugins: adds a mixed-sample loss in ``before_backward``.

    The mixed loss of a step is the sum over mixed samples that count
    (see :meth:`sample_weights`) of
    ``lam * CE(f(x~), y_i) + (1 - lam) * CE(f(x~), y_j)``, divided by the
    number of candidates (samples that had a partner, see
    :meth:`loss_denominator`), and added to the strategy's loss as
    ``strategy.loss += weight * mixed_loss``.

    The step never waits for the host: draws happen on the device generator,
    class membership is a lookup table, and a non-finite mixed term is
    replaced by 0 on the device and counted there (:attr:`skipped_steps`,
    read and warned about once per epoch).
    """

    def __init__(
        self,
        *,
        policy: PairPolicy,
        mix: str = "mixup",
        alpha: float = 1.0,
        prob: float = 1.0,
        weight: float = 1.0,
        loss_form: str = "add",
        asymmetric: bool | str | None = None,
        seed: int | None = None,
    ):
        """Build the plugin; every argument is keyword-only.

        :param policy: the pair-selection policy.
        :param mix: ``"mixup"`` (interpolate inputs), ``"cutmix"`` (paste a box)
            or ``"auto"``: each sample gets its own operation, from the policy
            when it chooses one (GradMix's
            :class:`~avalanche_mixplugins.operation_pairs.OperationPairs`), else
            CutMix with probability :attr:`switch_prob`.
        :param alpha: ``lam ~ Beta(alpha, alpha)``.
        :param prob: chance that an iteration adds a mixed loss at all.
        :param weight: weight of the mixed loss.
        :param loss_form: ``"add"`` (default): ``strategy.loss += weight *
            mixed_loss``, the original samples keep their whole loss;
            ``"replace"``: ``strategy.loss = (1 - weight) * strategy.loss + weight
            * mixed_loss`` with ``weight`` in [0, 1], so the gradient keeps the
            scale of the strategy's own; at ``weight=1`` the mixed samples take the
            place of the originals, as in timm's ``Mixup`` (for ``Naive`` +
            ``ReplayPlugin``, whose loss is the cross-entropy of the batch).
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
            boxes), which lives on the strategy's device (created from the seed
            when the device is known, see :meth:`_generator_for`), and of the
            host-side ``prob`` coin; ``None`` draws it from torch's global
            generator, so ``torch.manual_seed`` before building the plugin makes
            runs repeat. Runs repeat per device: CPU and CUDA generators draw
            different numbers for one seed.
        """
        super().__init__()
        check_one_of("mix", mix, MIX_CHOICES)
        check_one_of("loss_form", loss_form, LOSS_FORMS)
        if not isinstance(policy, PairPolicy):
            raise ValueError(
                f"policy must be a PairPolicy, got {type(policy).__name__}"
            )
        self.policy = policy
        self.mix = mix
        self.alpha = check_alpha(alpha)
        self.prob = check_fraction("prob", prob)
        self.weight = check_weight(weight)
        if loss_form == "replace" and self.weight > 1.0:
            raise ValueError(
                f"loss_form='replace' takes a weight in [0, 1], got {weight}"
            )
        self.loss_form = loss_form
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
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        """The plugin's generator: on the CPU until :meth:`_generator_for` is
        called with the training device, then on that device."""
        self._pending_state: tuple[str, Tensor] | None = None
        # the prob coin decides on the host whether a step is mixed: a host
        # generator, so the decision never waits for the device
        self._coin = random.Random(self.seed)
        self._current_lut: Tensor | None = None
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
        self._skipped: Tensor | int = 0
        self._warned_skipped = False

    # -- which samples ------------------------------------------------------
    def _generator_for(self, device: torch.device | str) -> torch.Generator:
        """The plugin's generator on ``device``, created from ``seed`` (or from a
        restored state saved on that kind of device) the first time."""
        device = torch.device(device)
        if device.type != "cpu" and device.index is None:
            device = torch.device(
                device.type, torch.get_device_module(device).current_device()
            )
        if self.generator.device != device:
            self.generator = torch.Generator(device=device).manual_seed(self.seed)
        if self._pending_state is not None:
            kind, state = self._pending_state
            self._pending_state = None
            if kind == self.generator.device.type:
                self.generator.set_state(state)
            else:
                warnings.warn(
                    f"{type(self).__name__}: the generator state was saved on "
                    f"{kind!r} and cannot be restored on {device.type!r}; the "
                    "generator restarts from the seed",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return self.generator

    def _current_lookup(self, device: torch.device, classes=None) -> Tensor:
        """Bool ``(max class + 2,)``: which labels are current classes (the last
        entry, False, is where labels outside the table land)."""
        lut = self._current_lut
        if lut is None or lut.device != device:
            if classes is None:
                classes = self._current_classes
            classes = sorted(int(c) for c in classes)
            lut = torch.zeros(max(classes, default=-1) + 2, dtype=torch.bool)
            lut[classes] = True
            lut = lut.to(device)
            self._current_lut = lut
        return lut

    def before_training(self, strategy: SupervisedTemplate, **kwargs):
        # setups that cannot work as meant, said before the first step
        check_setup(self, strategy)

    def before_training_exp(self, strategy: SupervisedTemplate, **kwargs):
        classes = sorted(int(c) for c in strategy.experience.classes_in_this_experience)
        self._current_classes = classes
        self._current = torch.tensor(classes, dtype=torch.long, device=strategy.device)
        self._current_lut = None
        self._current_lookup(torch.device(strategy.device), classes)
        self._generator_for(strategy.device)
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

    def after_training_epoch(self, strategy: SupervisedTemplate, **kwargs):
        # the count of non-finite steps is read once per epoch, not per step
        if not self._warned_skipped and self.skipped_steps > 0:
            self._warned_skipped = True
            warnings.warn(
                f"{type(self).__name__}: the mixed loss is not finite (NaN or inf "
                "in the inputs or the logits); the mixed term is skipped for such "
                "steps (count in plugin.skipped_steps)",
                RuntimeWarning,
                stacklevel=2,
            )

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
        if self._current_lut is None or self._current_lut.device != y.device:
            classes = strategy.experience.classes_in_this_experience
            self._current_lut = None
            self._current_lookup(y.device, classes)
        # a C-length lookup, not torch.isin (which sorts, and syncs, for many
        # classes); labels outside the table (and negative ones) are not current
        lut = self._current_lut
        is_buffer = ~lut[y.clamp(-1, lut.shape[0] - 1)]
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
        return self.policy.select(y, is_buffer, generator=self._generator_for(y.device))

    switch_prob: float = 0.5
    """With ``mix="auto"`` and a policy that does not choose operations: the
    chance that a sample is mixed by CutMix rather than Mixup."""

    def draw_operations(self, n: int, device) -> Tensor:
        """Long ``(n,)`` operation per sample (``mix="auto"``, random policies)."""
        from avalanche_mixplugins.operation_pairs import uniform_like

        u = uniform_like((n,), device, self._generator_for(device))
        return (u < self.switch_prob).long()

    def draw_lambda(self, n: int, operation: Tensor | None, device) -> Tensor:
        """``(n,)`` mixing weights, ``Beta(alpha, alpha)``; one per sample."""
        del operation
        gen = self._generator_for(device)
        return sample_lambda(self.alpha, n, device=device, generator=gen)

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
        partner, active, *chosen_op = chosen
        operation = chosen_op[0] if chosen_op else None
        gen = self._generator_for(x.device)
        if operation is None and self.mix == "auto":
            operation = self.draw_operations(x.shape[0], x.device)
        lam = self.draw_lambda(x.shape[0], operation, x.device)
        if operation is None:
            x_mix, lam_y = apply_mix(self.mix, x, partner, lam, generator=gen)
        else:
            x_mix, lam_y = mix_by_operation(x, partner, lam, operation, generator=gen)
        finite = None
        if x_mix.is_floating_point():
            # NaN/inf inputs are zeroed (and the step's mixed term dropped in
            # before_backward) without asking the host: a zero-weighted NaN
            # would still poison the gradients
            ok = torch.isfinite(x_mix)
            x_mix = torch.where(ok, x_mix, torch.zeros_like(x_mix))
            finite = ok.all()
            active = active & ok.flatten(1).all(dim=1)
        logits = avalanche_forward(strategy.model, x_mix, t)
        if isinstance(logits, Tensor) and logits.is_floating_point():
            ok = torch.isfinite(logits)
            logits = torch.where(ok, logits, torch.zeros_like(logits))
            finite = ok.all() if finite is None else finite & ok.all()
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
            x,
            y,
            t,
            is_buffer,
            partner,
            active,
            lam_y,
            x_mix,
            logits,
            mask,
            operation=operation,
            finite=finite,
        )

    def before_backward(self, strategy: SupervisedTemplate, **kwargs):
        if not strategy.is_training or self.weight == 0.0:
            return
        if self.prob < 1.0 and self._coin.random() >= self.prob:
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
        # of the step on the device: the inputs and logits were zeroed where
        # not finite (mixed_batch), so the term and its gradient are finite, and
        # it is replaced by 0 and counted; the count is read once per epoch.
        ok = torch.isfinite(loss)
        if batch.finite is not None:
            ok = ok & batch.finite
        self._skipped = self._skipped + (~ok).long()
        loss = torch.where(ok, loss, torch.zeros_like(loss))
        self.last_loss = loss.detach()
        self.last_batch = replace(batch, logits=batch.logits.detach())
        self.last_weights = w.detach()
        if self.loss_form == "replace":
            strategy.loss = (1.0 - self.weight) * strategy.loss + self.weight * loss
        else:
            strategy.loss = strategy.loss + self.weight * loss

    @property
    def skipped_steps(self) -> int:
        """Iterations whose mixed loss was not finite and was left out (reading
        it waits for the device: the count is kept there)."""
        return int(self._skipped)

    # -- state ------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Plain state (tensors, numbers) to resume a run with ``torch.save``."""
        return {
            "generator": self.generator.get_state(),
            "generator_device": self.generator.device.type,
            "coin": self._coin.getstate(),
            "seen_classes": sorted(self._seen_classes),
            "policy": self.policy.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        kind = state.get("generator_device", "cpu")
        if kind == self.generator.device.type:
            self.generator.set_state(state["generator"])
        # (again) when the training device is known, see _generator_for
        self._pending_state = (kind, state["generator"])
        if "coin" in state:
            self._coin.setstate(state["coin"])
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
    """

    mix_mode: str
    """The mixing operation, one of :data:`~avalanche_mixplugins.mixing.MIX_MODES`."""

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        prob: float = 1.0,
        weight: float = 1.0,
        loss_form: str = "add",
        pairing: str = "all",
        asymmetric: bool | str | None = None,
        seed: int | None = None,
    ):
        """Build the plugin; every argument is keyword-only.

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
        :param loss_form: ``"add"`` (default) or ``"replace"`` (the mixed loss
            takes a share ``weight`` of the strategy's loss, as in timm), see
            :class:`MixingPlugin`.
        :param asymmetric: ``"current"``/``True``, ``"both"``, ``"all"`` or ``False``; see
            :class:`MixingPlugin` (``None``: ``"current"`` for ``ER_ACE`` and
            ``ER_AML``, off otherwise).
        :param seed: seed of the plugin's random generator.
        """
        super().__init__(
            policy=RandomPairs(pairing=pairing),
            mix=self.mix_mode,
            alpha=alpha,
            prob=prob,
            weight=weight,
            loss_form=loss_form,
            asymmetric=asymmetric,
            seed=seed,
        )


__getattr__ = moved_names(
    __name__, {"MixedBatch": "avalanche_mixplugins.plugins.base:MixingStepBatch"}
)

__all__ = [
    "ASYMMETRIC_MODES",
    "LOSS_FORMS",
    "MIX_CHOICES",
    "MixingPlugin",
    "MixingStepBatch",
    "RandomMixPlugin",
    "current_only_mask",
]
