"""CalibrateMix as a plugin of :class:`~ssl_ext.strategy.SemiSupervisedStrategy`.

Rahman, Mohan, Sosea, Caragea. "CalibrateMix: Guided-Mixup Calibration of
Image Semi-Supervised Models". arXiv:2511.12964 (AAAI 2026).
https://arxiv.org/abs/2511.12964

One argument turns it on::

    SemiSupervisedStrategy(..., algorithm="softmatch",
                           plugins=[CalibrateMixPlugin(mode="fast")])

It works with every base algorithm of the strategy (FixMatch, SoftMatch,
FlexMatch; the authors released SoftMatch only). The maths lives in
:mod:`ssl_ext.dynamics` (AUM, APM) and :mod:`ssl_ext.calibratemix` (split,
pairing, mixed loss); this module only wires it to the strategy's callbacks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from avalanche.core import SupervisedPlugin

from ssl_ext.calibratemix import (
    DEFAULT_ALPHA,
    DEFAULT_K_FRACTION,
    MIX_LOSSES,
    MixedBatch,
    calibratemix_loss,
    check_k_fraction,
    make_mixed_batch,
)
from ssl_ext.dynamics import DEFAULT_APM_DELTA, APMTracker, AUMTracker
from ssl_ext.strategy import SAMPLE_ID, SemiSupervisedStrategy

if TYPE_CHECKING:
    from torch import Tensor

MODES = ("fast", "faithful")
RELEASE_WARMUP_FRACTION = 150_000 / 2**20
"""Warm-up of the release: 150,000 of 2^20 iterations (about 14.3%)."""
EXTRA_INPUT = "calibratemix"
"""Name of the mixed batch in the strategy's ``mb_extra_output`` (fast mode)."""


class CalibrateMixPlugin(SupervisedPlugin):
    """Training-dynamics-guided mixup for calibration of semi-supervised models.

    Rahman, Mohan, Sosea, Caragea, arXiv:2511.12964 (AAAI 2026). Labeled
    samples are scored by their AUM (Pleiss et al., NeurIPS 2020), unlabeled
    ones by their APM at the pseudo-label (MarginMatch, Sosea & Caragea, CVPR
    2023), both keyed by dataset index (:mod:`ssl_ext.dynamics`). After a
    warm-up, each iteration splits both batches at the median score, mixes
    labeled-easy with unlabeled-hard and labeled-hard with unlabeled-easy
    samples, partners drawn among the ``k`` least cosine-similar unlabeled
    weak views, with one ``lam ~ Beta(alpha, alpha)`` per group, and adds the
    mixed loss against the one-hot label and one-hot pseudo-label
    (:mod:`ssl_ext.calibratemix`).

    Modes:

    * ``"faithful"``: as released. After the main pass (loss ``L1``), a second
      forward with gradients of ``(labeled, mixed, weak, strong)`` recomputes
      the base SSL loss (updating the algorithm's statistics again, as the
      release does) and the objective is ``L1 + L2``,
      ``L2 = base loss (second pass) + L_mix1 + L_mix2``.
    * ``"fast"``: one forward and one backward. The mixed samples join the
      main forward (:meth:`~ssl_ext.strategy.SemiSupervisedStrategy.add_forward_input`),
      so the split and pairing happen before the forward with the trackers'
      state from the earlier steps (labeled: AUM so far; unlabeled: the
      largest APM of the sample, i.e. the APM at the class it has been
      pseudo-labelled as most confidently); the mixed targets use this
      forward's detached pseudo-labels. The base loss is counted twice so
      the objective equals the faithful one in expectation:
      ``2 x base + L_mix1 + L_mix2``.

    Both modes update AUM every step (warm-up included) and APM after the
    warm-up, from the main forward's detached logits; during the warm-up
    only the base loss is used.

    :param mode: ``"fast"`` (default, see ``docs/calibratemix.md`` for the
        measured cost) or ``"faithful"``.
    :param warmup: iterations before mixing starts: an ``int`` number of
        iterations, or a ``float`` in ``[0, 1)``, the fraction of the
        experience's training iterations (default: the release's
        150,000 / 2^20, about 0.143). The count starts when the unlabeled
        dataset (hence the APM table) changes.
    :param alpha: ``Beta(alpha, alpha)`` of the mixing coefficients (0.4).
    :param k_fraction: number of least-similar candidates as a fraction of the
        unlabeled batch (0.05; the release: 15 of 224).
    :param apm_delta: ``delta`` of the APM schedule ``delta / (1 + n)`` (0.997).
    :param loss: ``"bce"`` (sigmoid BCE, as released) or ``"ce"`` (softmax CE).
    :param apm_dtype: storage dtype of the APM table (``torch.float16``
        halves its ``4 N C`` bytes, see :mod:`ssl_ext.dynamics`).
    :param seed: seed of the plugin's CPU generator (lambdas, partner draws);
        ``None`` uses torch's global generator.
    """

    def __init__(
        self,
        *,
        mode: str = "fast",
        warmup: int | float = RELEASE_WARMUP_FRACTION,
        alpha: float = DEFAULT_ALPHA,
        k_fraction: float = DEFAULT_K_FRACTION,
        apm_delta: float = DEFAULT_APM_DELTA,
        loss: str = "bce",
        apm_dtype: torch.dtype = torch.float32,
        seed: int | None = None,
    ):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if isinstance(warmup, bool) or not isinstance(warmup, int | float):
            raise ValueError(f"warmup must be an int or a float, got {warmup!r}")
        if isinstance(warmup, int) and warmup < 0:
            raise ValueError(f"warmup must be >= 0 iterations, got {warmup}")
        if isinstance(warmup, float) and not 0.0 <= warmup < 1.0:
            raise ValueError(
                f"a float warmup is a fraction of the iterations in [0, 1), got {warmup}"
            )
        if loss not in MIX_LOSSES:
            raise ValueError(f"loss must be one of {MIX_LOSSES}, got {loss!r}")
        if not 0.0 < float(apm_delta) <= 1.0:
            raise ValueError(f"apm_delta must be in (0, 1], got {apm_delta}")
        if alpha is None or not float(alpha) > 0:
            raise ValueError(f"alpha must be positive, got {alpha!r}")
        self.mode = mode
        self.warmup = warmup
        self.alpha = float(alpha)
        self.k_fraction = check_k_fraction(k_fraction)
        self.apm_delta = float(apm_delta)
        self.loss = loss
        self.apm_dtype = apm_dtype
        self.seed = seed
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

        self.aum: AUMTracker | None = None
        self.apm: APMTracker | None = None
        self.iteration = 0
        """Training iterations since the APM table was created."""
        self.warmup_iterations = 0
        self.mix_loss: Tensor | None = None
        """Detached ``L_mix1 + L_mix2`` of the last iteration (``None`` if none)."""
        self._unlabeled = None
        self.mixed: MixedBatch | None = None
        """This iteration's mixed batch (``None`` when nothing is mixed)."""

    # ------------------------------------------------------------- setup
    @property
    def active(self) -> bool:
        """True once the warm-up is over (mixing is on)."""
        return self.iteration >= self.warmup_iterations

    def before_training_exp(self, strategy: SemiSupervisedStrategy, **kwargs):
        if not isinstance(strategy, SemiSupervisedStrategy):
            raise ValueError(
                "CalibrateMixPlugin needs a SemiSupervisedStrategy, got "
                f"{type(strategy).__name__}"
            )
        device = strategy.device
        ids = getattr(strategy.adapted_dataset, SAMPLE_ID, None)
        num_labeled = (
            1 + max((int(i) for i in ids), default=0) if ids is not None else 1
        )
        if self.aum is None:
            self.aum = AUMTracker(num_samples=num_labeled, device=device)
        else:
            self.aum.to(device).grow(num_labeled)
        unlabeled = strategy.unlabeled_dataset
        if unlabeled is not self._unlabeled:
            # a table restored by load_state_dict is kept for a dataset of its size
            restored = (
                self.apm is not None
                and self._unlabeled is None
                and self.apm.num_samples == len(unlabeled)
            )
            if not restored:
                self.apm = APMTracker(
                    num_samples=len(unlabeled),
                    delta=self.apm_delta,
                    dtype=self.apm_dtype,
                    device=device,
                )
                self.iteration = 0
            self._unlabeled = unlabeled
        self.apm.to(device)
        if isinstance(self.warmup, int):
            self.warmup_iterations = self.warmup
        else:
            total = strategy.train_iterations
            if total is None:
                total = len(strategy.dataloader) * strategy.train_epochs
            self.warmup_iterations = int(round(self.warmup * total))

    # ------------------------------------------------------ per iteration
    def _batch_ok(self, strategy) -> bool:
        if strategy.mb_index is None:
            raise ValueError(
                "CalibrateMix needs the labeled sample ids (strategy.mb_index)"
            )
        return strategy.mb_x.shape[0] >= 2 and strategy.mb_ulb_weak.shape[0] >= 2

    def _mix(self, strategy, unlabeled_scores: Tensor) -> MixedBatch:
        return make_mixed_batch(
            strategy.mb_x,
            strategy.mb_ulb_weak,
            self.aum.value(strategy.mb_index),
            unlabeled_scores,
            alpha=self.alpha,
            k_fraction=self.k_fraction,
            generator=self.generator,
        )

    def before_forward(self, strategy, **kwargs):
        self.mixed = None
        self.mix_loss = None
        if self.mode != "fast" or not self.active or not self._batch_ok(strategy):
            return
        scores, _ = self.apm.best(strategy.mb_ulb_index)
        self.mixed = self._mix(strategy, scores)
        strategy.add_forward_input(EXTRA_INPUT, self.mixed.x)

    def after_forward(self, strategy, **kwargs):
        """Update AUM (every step) and APM (after the warm-up), detached.

        Under ``torch.distributed`` every rank's rows are gathered first, so the
        tables see all ranks' samples and stay identical on every rank.
        """
        logits, labels, index = strategy.gather_from_ranks(
            strategy.mb_output.detach(), strategy.mb_y, strategy.mb_index
        )
        self.aum.update(logits, labels, index)
        if self.active:
            weak, ulb_index = strategy.gather_from_ranks(
                strategy.mb_ulb_weak_output.detach(), strategy.mb_ulb_index
            )
            self.apm.update(weak, ulb_index)

    def before_backward(self, strategy, **kwargs):
        if self.mode == "fast":
            if self.mixed is None:
                return
            mixed = self.mixed
            logits_mix = strategy.mb_extra_output[EXTRA_INPUT]
            base = strategy.sup_loss + strategy.lambda_u * strategy.unsup_loss
            extra = base
        else:
            if not self.active or not self._batch_ok(strategy):
                return
            weak = strategy.mb_ulb_weak_output
            scores = self.apm.value(strategy.mb_ulb_index, weak.detach().argmax(dim=1))
            mixed = self.mixed = self._mix(strategy, scores)
            z_lb, logits_mix, z_weak, z_strong = strategy.forward_parts(
                strategy.mb_x, mixed.x, strategy.mb_ulb_weak, strategy.mb_ulb_strong
            )
            extra = strategy.ssl_loss(
                z_lb, strategy.mb_y, z_weak, z_strong, strategy.mb_ulb_index
            ).loss
        mix = calibratemix_loss(
            logits_mix,
            strategy.mb_y[mixed.labeled],
            strategy.mb_pseudo_labels[mixed.partner],
            mixed.lam,
            mixed.group,
            loss=self.loss,
            check_labels=False,  # the strategy validates labels once per experience
        )
        self.mix_loss = mix.detach()
        strategy.loss = strategy.loss + extra + mix

    def after_training_iteration(self, strategy, **kwargs):
        self.iteration += 1

    # ----------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Trackers, iteration counter and generator state."""
        return {
            "aum": None if self.aum is None else self.aum.state_dict(),
            "apm": None if self.apm is None else self.apm.state_dict(),
            "iteration": self.iteration,
            "warmup_iterations": self.warmup_iterations,
            "generator": None if self.generator is None else self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (the unlabeled dataset must be the same:
        it is matched by size at the next experience)."""
        unknown = set(state) - {
            "aum",
            "apm",
            "iteration",
            "warmup_iterations",
            "generator",
        }
        if unknown:
            raise ValueError(f"unexpected keys in state dict: {sorted(unknown)}")
        if state.get("aum") is not None:
            n = state["aum"]["count"].shape[0]
            self.aum = AUMTracker(num_samples=n)
            self.aum.load_state_dict(state["aum"])
        if state.get("apm") is not None:
            n = state["apm"]["count"].shape[0]
            self.apm = APMTracker(
                num_samples=n, delta=self.apm_delta, dtype=self.apm_dtype
            )
            self.apm.load_state_dict(state["apm"])
        self.iteration = int(state.get("iteration", 0))
        self.warmup_iterations = int(state.get("warmup_iterations", 0))
        if state.get("generator") is not None:
            if self.generator is None:
                self.generator = torch.Generator()
            self.generator.set_state(state["generator"])


__all__ = ["EXTRA_INPUT", "MODES", "RELEASE_WARMUP_FRACTION", "CalibrateMixPlugin"]
