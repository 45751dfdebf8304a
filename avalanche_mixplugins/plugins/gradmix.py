"""GradMix: gradient-based selective mixup for Avalanche replay strategies."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from avalanche_mixplugins._constants import scalar
from avalanche_mixplugins.gradients import (
    GRAD_SPACES,
    HeadCapture,
    check_reference,
    flat_buffer_alignment,
    last_layer_buffer_alignment,
    per_sample_gradients,
)
from avalanche_mixplugins.mixing import one_hot_and_mix_targets
from avalanche_mixplugins.operation_pairs import OperationPairs
from avalanche_mixplugins.pairing import (
    BUFFER_PAIRINGS,
    NO_BUFFER_MODES,
    GradientPairs,
    allowed_pairs,
    candidate_count,
    draw_partners,
)
from avalanche_mixplugins.plugins.base import MixingPlugin, MixingStepBatch
from avalanche_mixplugins.plugins.gradmix_support import (
    GradMixInspection,
    HeadFeatures,
    check_has_replay,
    warn_no_buffer,
)
from avalanche_mixplugins.plugins.gradmix_support import (
    all_reduce_sum as _all_reduce_sum,
)
from avalanche_mixplugins.validation import check_one_of

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate

LOSS_NORMS = ("candidates", "active", "survivors")


class GradMixPlugin(
    GradMixInspection, HeadFeatures, MixingPlugin, supports_distributed=True
):
    """GradMix: mix only class pairs whose mixed gradient agrees with the buffer's.

    Kim, Hwang, Whang. "GradMix: Gradient-based Selective Mixup for Robust Data
    Augmentation in Class-Incremental Learning". arXiv:2505.08528 (KDD 2026).
    https://arxiv.org/abs/2505.08528

    Mixing random pairs can raise the loss of previous tasks: the gradient of
    the mixed samples may point against the mean gradient of the buffer
    samples. To first order an SGD step on the mixed samples changes the
    buffer loss by ``-eta * <g_buf, g_mix>``, so GradMix keeps a score per
    **class pair**, the mean inner product between the gradient of mixed
    samples of that pair and the buffer's mean gradient, and mixes only pairs
    with a positive score (helpful pairs).

    Each iteration, with the same integration as
    :class:`~avalanche_mixplugins.plugins.MixupPlugin`:

    1. partners are drawn among samples whose class pair is not known to be
       detrimental (a fraction ``refresh`` of the rows ignores the scores, so
       every pair keeps getting evidence); a pair with no evidence yet in the
       current experience is judged by the smoothed score of its kind (two
       previous classes, one of each, two current classes);
    2. the mixed batch is forwarded once (this forward also trains);
    3. the buffer's mean gradient is computed from the buffer (previous-class)
       samples of the step, **leaving out each candidate's own source
       samples** (a candidate made from buffer sample ``k`` correlates with
       ``k``'s gradient by construction, which would make every pair with an
       old class look helpful), and each mixed sample's loss gradient is
       projected on it, from detached outputs;
    4. the per-pair means update the smoothed ``C x C`` score matrix
       (``momentum``), and only mixed samples of pairs with a positive score
       count in the mixed loss, which is divided by the number of samples
       random-pair Mixup would mix (filtering removes loss; it never makes
       the survivors weigh more).

    With ``grad_space="last"`` (default) the gradients are those of the last
    linear layer, in closed form from the logits and the head's input, which a
    forward hook captures during the strategy's own forward and the mixed
    forward: no second forward, no per-sample autograd; the selection costs
    one ``C x D`` matrix product per step over Mixup. ``grad_space="full"``
    uses exact per-sample gradients of all parameters (``torch.func``) for
    small models and validation.

    Decisions where the paper could not be read (the gradient space, the
    first experience, the loss scale, ER-ACE) and the measurements behind
    them are in the package's ``docs/gradmix.md``; each default was chosen on
    data held out of the training split. Under ``torch.distributed`` the
    buffer gradient and the per-pair sums are all-reduced, so every rank
    holds the same scores.

    The parameters are documented on ``__init__`` (``help(GradMixPlugin.__init__)``).
    """

    default_asymmetric = "both"

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        mix: str = "mixup",
        prob: float = 1.0,
        weight: float = 1.0,
        pairing: str = "all",
        grad_space: str = "last",
        momentum: float = 0.9,
        refresh: float = 0.1,
        min_evidence: int = 1,
        kind_prior: bool = True,
        fallback: str = "none",
        no_buffer: str = "none",
        leave_one_out: bool = True,
        reference: str = "buffer",
        loss_norm: str = "candidates",
        asymmetric: bool | str | None = None,
        filter_current: bool | None = None,
        head: str | None = None,
        seed: int | None = None,
    ):
        """Build the plugin; every argument is keyword-only.

        :param alpha: ``lam ~ Beta(alpha, alpha)`` (> 0).
        :param mix: ``"mixup"``, ``"cutmix"`` or ``"auto"``: the operation is
            scored with the pair (one score matrix per operation,
            :class:`~avalanche_mixplugins.operation_pairs.OperationPairs`) and
            each sample's partner and operation are drawn together among the
            combinations not known to be detrimental.
        :param prob: chance that an iteration is mixed, in [0, 1].
        :param weight: weight of the mixed loss added to the strategy's loss.
        :param pairing: ``"all"``, ``"buffer_current"``, ``"with_buffer"`` or
            ``"current"`` (see :func:`~avalanche_mixplugins.pairing.allowed_pairs`).
        :param grad_space: ``"last"`` (closed form, last linear layer) or
            ``"full"`` (exact, all parameters).
        :param momentum: smoothing of the pair scores across steps, in [0, 1).
            0.9 agreed best with the measured effect of a step on held-out
            previous-class loss (0.99 and a running mean lag behind the model).
        :param refresh: fraction of samples paired ignoring the scores, in [0, 1].
        :param min_evidence: steps in which a pair must have been scored before
            its positive score lets it into the mixed loss (``1``: the step's own
            evidence suffices). Larger values keep noisy early scores, e.g. at the
            start of an experience, from admitting pairs.
        :param kind_prior: a pair without evidence in the current experience
            takes the smoothed score of its kind (two previous classes, one of
            each, two current classes) until its own evidence arrives, and its
            first evidence is smoothed from there (default; see
            :class:`~avalanche_mixplugins.pairing.GradientPairs`). The sign of a
            pair's effect on held-out old-class loss is mostly that of its kind,
            so a new class starts from what its kind did in earlier experiences
            instead of being mixed until it has evidence of its own; chosen on
            validation data (it mattered most with few iterations per
            experience). ``False``: a pair is admitted on its first evidence and
            keeps its score across experiences.
        :param fallback: ``"none"`` or ``"same_class"`` for samples with no
            helpful partner.
        :param no_buffer: ``"none"`` (default) or ``"mixup"``: what to do before
            any previous-task class exists (no pair can be scored then).
        :param leave_one_out: score each candidate against the buffer mean
            gradient without its own source samples (default). ``False`` keeps
            them, which biases every pair with an old class towards "helpful"
            (kept for ablations).
        :param reference: what a candidate's gradient must agree with.
            ``"buffer"`` (default): the mean gradient of the step's buffer
            samples, the paper's criterion. ``"buffer+current"``: that gradient
            **plus** the mean gradient of the step's current-class samples
            (full-softmax cross-entropy, the loss at evaluation time), each
            leaving out the candidate's own sources: to first order, a
            positive score lowers the buffer's and the current classes' mean
            losses together, so a mix of a new and an old class that costs the
            buffer a little but teaches the new classes more is kept.
            ``"buffer|current"``: the larger of the two scores (agreement with
            either reference). ``"balanced"``: the two scores, each divided by
            the norm of its reference's mean gradient, summed (the directions
            weigh alike; under ``"buffer+current"`` the larger current-class
            gradient can decide alone). A candidate without another buffer
            sample gets no evidence in every mode; without another current
            sample it is scored against the buffer alone. An option for ER-ACE, whose
            GradMix is limited by new-class accuracy (see the package's
            ``docs/gradmix.md``).
        :param loss_norm: ``"candidates"`` (default): the mixed loss is divided by
            the number of samples random-pair Mixup would mix (every sample with
            an admissible partner under ``pairing``), so pairs filtered out, at
            partner selection or by their score, remove loss;
            ``"active"``: divided by the samples that got a partner (selection
            then concentrates the whole mixed term on the few helpful pairs);
            ``"survivors"``: divided by the helpful samples, which gives each
            survivor more weight as fewer survive (it can blow the loss up at an
            experience boundary). The last two are kept for ablations.
        :param asymmetric: see :class:`MixingPlugin`. ``None`` (default):
            ``"both"`` for ER-ACE and ER-AML (mixes of two current samples leave
            the previous classes out, mixes of two buffer samples leave the
            current classes out; chosen on validation data: the mixes GradMix
            keeps are mostly old-class mixes, which trained over every logit
            bias new inputs towards old classes), off otherwise.
        :param filter_current: whether mixes of two current-class samples go
            through the score filter. ``None`` (default): they do, unless the
            asymmetric loss is on; under it their loss never reaches a
            previous-class logit (the interference ER-ACE accepts for its own
            current samples), so they are mixed as plain Mixup would and only
            mixes with a buffer source are filtered. Their scores are still
            updated and reported.
        :param head: name of the classification layer (an ``nn.Linear`` in
            ``model.named_modules()``) for ``grad_space="last"``. ``None``
            (default): ``model.get_classifier()`` when the model has it (timm),
            else its last registered ``nn.Linear``; a model with a layer
            registered after its classifier (e.g. a projection head) must name
            it, and the first training step says so otherwise.
        :param seed: seed of the plugin's random generator. Under
            ``torch.distributed`` every rank must use the same seed (the default
            ``None`` draws it from torch's global generator, which the ranks
            share when seeded alike): with ``prob < 1`` the ranks decide together
            whether a step is mixed, and a rank that skipped would leave the
            others waiting in the all-reduce.
        """
        check_one_of("grad_space", grad_space, GRAD_SPACES)
        check_one_of("no_buffer", no_buffer, NO_BUFFER_MODES)
        policy_kwargs = dict(
            pairing=pairing,
            momentum=momentum,
            refresh=refresh,
            fallback=fallback,
            min_evidence=min_evidence,
            kind_prior=kind_prior,
        )
        policy_type = OperationPairs if mix == "auto" else GradientPairs
        super().__init__(
            policy=policy_type(**policy_kwargs),
            mix=mix,
            alpha=alpha,
            prob=prob,
            weight=weight,
            asymmetric=asymmetric,
            seed=seed,
        )
        check_one_of("loss_norm", loss_norm, LOSS_NORMS)
        if filter_current not in (None, True, False):
            raise ValueError(
                f"filter_current must be None, True or False, got {filter_current!r}"
            )
        self.filter_current = filter_current
        self.grad_space = grad_space
        self.no_buffer = no_buffer
        self.leave_one_out = bool(leave_one_out)
        self.reference = check_reference(reference)
        self.loss_norm = loss_norm
        if head is not None and (not isinstance(head, str) or not head):
            raise ValueError(f"head must be None or a layer name, got {head!r}")
        self.head = head
        self._capture: HeadCapture | None = None
        self._head: tuple[str, torch.nn.Linear] | None = None
        self._head_has_bias = True
        self._warned_fallback = False
        self.history: list[dict] = []
        self.last_inner: Tensor | None = None
        self._buffer_steps: Tensor | int = 0
        self._warned_no_buffer = False
        self._current_masks: dict[tuple, Tensor] = {}

    # -- callbacks -----------------------------------------------------------------
    def before_training(self, strategy: SupervisedTemplate, **kwargs):
        super().before_training(strategy, **kwargs)
        check_has_replay(strategy)

    def before_training_exp(self, strategy: SupervisedTemplate, **kwargs):
        super().before_training_exp(strategy, **kwargs)
        self.policy.start_experience()
        self._current_masks = {}
        self._attach_head(strategy)

    def after_training_exp(self, strategy: SupervisedTemplate, **kwargs):
        self._detach_head()
        seen, self._buffer_steps = int(self._buffer_steps), 0
        if not self._warned_no_buffer:
            self._warned_no_buffer = warn_no_buffer(self._has_previous, seen)
        exp = strategy.experience.current_experience
        frac = self.helpful_fraction()
        self.history.append(
            {
                "experience": int(exp),
                "helpful_fraction": frac,
                "scores": self.pair_scores,
            }
        )
        super().after_training_exp(strategy, **kwargs)

    # -- policy ------------------------------------------------------------------
    def select_pairs(self, strategy, y, is_buffer):
        if not self._has_previous:
            if self.no_buffer == "none" or self.policy.pairing in BUFFER_PAIRINGS:
                return None
            allowed = allowed_pairs(is_buffer, self.policy.pairing)
            return draw_partners(allowed, generator=self._generator_for(y.device))
        n_labels = max(self._seen_classes | set(self._current_classes)) + 1
        self.policy.grow(n_labels, device=y.device)
        self.policy.exempt = self._exempt_classes(strategy, y.device)
        self._mark_current(y.device)
        return super().select_pairs(strategy, y, is_buffer)

    def _current_mask(self, role: str, device) -> Tensor:
        """Bool ``(C,)`` of the current classes over the policy's ``C`` classes.

        Built once per experience, size and device (``role`` keeps the
        policy's ``current`` and ``exempt`` distinct tensors): handing the
        policy the same tensor every step lets it reuse what it derived from
        it (:meth:`GradientPairs.effective`) instead of recomputing it.
        """
        n = self.policy.num_classes
        key = (role, n, torch.device(device))
        mask = self._current_masks.get(key)
        if mask is None:
            mask = torch.zeros(n, dtype=torch.bool, device=device)
            mask[self._current.to(device)] = True
            self._current_masks[key] = mask
        return mask

    def _mark_current(self, device) -> None:
        """Tell the policy the current classes (the kinds of the pairs)."""
        self.policy.current = self._current_mask("current", device)

    def _filters_current(self, strategy: SupervisedTemplate) -> bool:
        if self.filter_current is not None:
            return self.filter_current
        return not self._asymmetric(strategy)

    def _exempt_classes(self, strategy: SupervisedTemplate, device) -> Tensor | None:
        """Bool ``(C,)`` of the current classes when their mutual mixes skip the filter."""
        if self._filters_current(strategy):
            return None
        return self._current_mask("exempt", device)

    def pair_inner_products(
        self, strategy: SupervisedTemplate, batch: MixingStepBatch
    ) -> Tensor:
        """Inner product of each mixed sample's gradient with the buffer's mean gradient.

        With ``leave_one_out`` (default) candidate ``i`` is scored against the
        mean gradient of the buffer samples **other than its own sources**
        (sample ``i`` and its partner, when they are buffer samples): its own
        source's gradient correlates with it by construction and would make
        every pair with an old class look helpful. Candidates with no other
        buffer sample get ``NaN`` (no evidence). With ``reference`` other
        than ``"buffer"`` the score also counts the current-class samples'
        mean gradient (:func:`~avalanche_mixplugins.gradients.combine_references`).
        """
        c = batch.logits.shape[1]
        # labels were validated once this experience (MixingPlugin): no sync here
        targets, targets_mix = one_hot_and_mix_targets(
            batch.y, batch.partner, batch.lam, c
        )
        if self.grad_space == "last":
            h, z = self._pool_features(strategy, batch)
            h_mix, z_mix = self._mixed_features(batch)
            if batch.logit_mask is not None:
                z_mix = z_mix.masked_fill(batch.logit_mask, float("-inf"))
            return last_layer_buffer_alignment(
                h,
                z,
                targets,
                batch.is_buffer,
                h_mix,
                z_mix,
                targets_mix,
                batch.partner,
                bias=self._head_has_bias,
                leave_one_out=self.leave_one_out,
                reference=self.reference,
                reduce=_all_reduce_sum,
            )
        g_pool = per_sample_gradients(strategy.model, batch.x, targets)
        g_mix = per_sample_gradients(strategy.model, batch.x_mix.detach(), targets_mix)
        return flat_buffer_alignment(
            g_pool,
            g_mix,
            batch.is_buffer,
            batch.partner,
            leave_one_out=self.leave_one_out,
            reference=self.reference,
            reduce=_all_reduce_sum,
        )

    def sample_weights(
        self, strategy: SupervisedTemplate, batch: MixingStepBatch
    ) -> Tensor:
        if not self._has_previous:
            return batch.active.float()
        self.policy.grow(batch.logits.shape[1], device=batch.y.device)
        self._mark_current(batch.y.device)
        inner = self.pair_inner_products(strategy, batch)
        has_buffer = batch.is_buffer.any()
        self._buffer_steps = self._buffer_steps + has_buffer  # a long count
        # batch_pair_sums leaves out non-finite inner products itself
        valid = batch.active & has_buffer
        op = batch.operation
        sums, counts = self.policy.batch_pair_sums(
            batch.y, batch.partner, inner, valid, operation=op
        )
        _all_reduce_sum(sums, counts)
        self.policy.update(sums, counts)
        self.last_inner = inner.detach() if inner.requires_grad else inner
        helpful = self.policy.helpful(batch.y, batch.partner, operation=op)
        return (batch.active & helpful).float()

    def loss_denominator(self, batch: MixingStepBatch, weights: Tensor) -> Tensor:
        if self.loss_norm == "survivors":
            return weights.sum().clamp_min(1.0)
        if self.loss_norm == "active":
            return super().loss_denominator(batch, weights)
        # what random-pair Mixup would train on, whatever the scores say
        if self.policy.pairing == "all":
            # every sample (at least 1): a constant per batch size, made once
            n = float(max(batch.is_buffer.shape[0], 1))
            return scalar(n, torch.get_default_dtype(), batch.is_buffer.device)
        return candidate_count(batch.is_buffer, self.policy.pairing)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["history"] = list(self.history)
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.history = list(state.get("history", []))


__all__ = ["GradMixPlugin"]
