"""CalibrateMix as a plugin of :class:`~ssl_ext.strategy.SemiSupervisedStrategy`.

Rahman, Mohan, Sosea, Caragea. "CalibrateMix: Guided-Mixup Calibration of
Image Semi-Supervised Models". arXiv:2511.12964 (AAAI 2026).
https://arxiv.org/abs/2511.12964

One argument turns it on::

    SemiSupervisedStrategy(..., algorithm="softmatch",
                           plugins=[CalibrateMixPlugin(mode="fast")])

The arguments chosen per base algorithm on validation data (``loss``,
``mix_weight``, ``alpha``) default to ``None`` and are resolved when training
starts, from the strategy's algorithm (:data:`ALGORITHM_DEFAULTS`).

It works with every base algorithm of the strategy (FixMatch, SoftMatch,
FlexMatch; the authors released SoftMatch only). The maths lives in
:mod:`ssl_ext.dynamics` (AUM, APM) and :mod:`ssl_ext.calibratemix` (split,
pairing, mixed loss); this module only wires it to the strategy's callbacks.
What outlives an iteration (the AUM / APM tables per experience, the
checkpoint state) is :class:`~ssl_ext.calibratemix_state.CalibrateMixState`.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

import torch
from avalanche.core import SupervisedPlugin

from avalanche_mixplugins.validation import (
    check_choice,
    check_k_fraction,
    check_positive_int,
    check_warmup,
)
from ssl_ext.algorithms import PSEUDO_LABELERS
from ssl_ext.calibratemix import (
    DEFAULT_ALPHA,
    DEFAULT_K_FRACTION,
    MIX_LOSSES,
    CalibrateMixBatch,
    calibratemix_loss,
    make_mixed_batch,
)
from ssl_ext.calibratemix_diagnostics import DIAGNOSTICS, SplitDiagnostics, publish
from ssl_ext.calibratemix_state import CalibrateMixState
from ssl_ext.dynamics import DEFAULT_APM_DELTA, APMTracker, AUMTracker
from ssl_ext.strategy import SemiSupervisedStrategy

if TYPE_CHECKING:
    from torch import Tensor

MODES = ("fast", "faithful")
SPLIT_RULES = ("dynamics", "random")
RELEASE_WARMUP_FRACTION = 150_000 / 2**20
"""Warm-up of the release: 150,000 of 2^20 iterations (about 14.3%)."""

RELEASE_DEFAULTS: dict[str, object] = {
    "loss": "bce",
    "mix_weight": 1.0,
    "alpha": DEFAULT_ALPHA,
}
"""The release's values of the per-algorithm arguments (sigmoid BCE, weight 1,
``Beta(0.4, 0.4)``): the faithful mode's defaults, and the fast mode's for a
pseudo-labeller that :data:`ALGORITHM_DEFAULTS` does not know."""

ALGORITHM_DEFAULTS: dict[str, dict[str, object]] = {
    "fixmatch": {"loss": "bce", "mix_weight": 1.0, "alpha": 1.0},
    "softmatch": {"loss": "ce", "mix_weight": 0.5, "alpha": 1.0},
    "flexmatch": {"loss": "ce", "mix_weight": 0.5, "alpha": 1.0},
}
"""Fast-mode defaults per base algorithm, selected on a validation split
(``docs/calibratemix.md``, "Defaults per base algorithm", and
``docs/results_ssl.md`` for the runs behind each row)."""

TUNED_ARGUMENTS = tuple(RELEASE_DEFAULTS)
"""The arguments resolved from the algorithm when left to ``None``."""

log = logging.getLogger(__name__)


def algorithm_name(algorithm) -> str | None:
    """The registry name of a strategy's ``algorithm``: the name itself, or the
    name of a built-in pseudo-labeller's exact class; ``None`` for any other
    :class:`~ssl_ext.algorithms.PseudoLabeler` (subclasses included, since they
    may change the rule)."""
    if isinstance(algorithm, str):
        return algorithm if algorithm in ALGORITHM_DEFAULTS else None
    for name, rule in PSEUDO_LABELERS.items():
        if type(algorithm) is rule:
            return name
    return None


def resolve_defaults(
    mode: str, algorithm, explicit: dict[str, object]
) -> tuple[dict[str, object], dict[str, str]]:
    """Values of :data:`TUNED_ARGUMENTS` for ``mode`` and the strategy's
    ``algorithm``, and where each came from.

    An argument given explicitly (not ``None`` in ``explicit``) always wins;
    otherwise the faithful mode takes :data:`RELEASE_DEFAULTS` (the release's
    recipe) and the fast mode its algorithm's row of
    :data:`ALGORITHM_DEFAULTS`, or :data:`RELEASE_DEFAULTS` with a warning if
    the algorithm is a pseudo-labeller the table does not know.

    :return: ``(values, sources)``; a source is ``"explicit"``,
        ``"release"``, ``"table:<algorithm>"`` or ``"release (unknown
        pseudo-labeller <Class>)"``.
    """
    name = algorithm_name(algorithm)
    if mode == "faithful":
        row, source = RELEASE_DEFAULTS, "release"
    elif name is not None:
        row, source = ALGORITHM_DEFAULTS[name], f"table:{name}"
    else:
        row = RELEASE_DEFAULTS
        source = f"release (unknown pseudo-labeller {type(algorithm).__name__})"
    values, sources = {}, {}
    for key in TUNED_ARGUMENTS:
        if explicit.get(key) is not None:
            values[key], sources[key] = explicit[key], "explicit"
        else:
            values[key], sources[key] = row[key], source
    return values, sources


class CalibrateMixPlugin(CalibrateMixState, SupervisedPlugin):
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

    Every iteration, in both modes: the strategy's main forward of
    ``(labeled, weak, strong)``; then (``after_forward``) AUM is updated from
    the detached labeled logits (warm-up included) and, after the warm-up,
    APM from the detached weak logits; then the split and the pairs are
    computed **from these updated values** (APM read at the arg-max of this
    step's weak logits, the hard pseudo-label). Unlabeled samples with fewer
    than ``min_apm_updates`` APM updates are *undecided*: they are neither
    easy nor hard and are never paired.

    Modes (``before_backward``):

    * ``"fast"`` (default): one more forward, with gradients, of the ``B``
      mixed samples only, and one backward of
      ``base + mix_weight * (L_mix1 + L_mix2)``.
    * ``"faithful"``: the release's recipe: a second forward with gradients of
      ``(labeled, mixed, weak, strong)``, and the objective ``L1 + L2``,
      ``L2 = base loss of the second pass + L_mix1 + L_mix2``. Recomputing the
      base loss updates the algorithm's statistics again, as the release does.

    ``double_base_loss`` controls the extra base-loss term on its own (the
    release's ``L1 + L2`` counts the base loss twice): ``None`` means ``True``
    in faithful mode (the release) and ``False`` in fast mode. With ``False``
    the faithful second pass still runs on the whole batch (same BatchNorm
    context as the release) but only its mixed logits enter the loss; with
    ``True`` the fast mode adds the main pass's base loss a second time.

    Diagnostics of the split, from the values it used, are averaged over each
    experience's mixing iterations, appended to :attr:`history` and published
    through the strategy's evaluator (``CalibrateMix_<name>/train_phase/
    train_stream`` for each name of :data:`DIAGNOSTICS`).

    Defaults per base algorithm. ``loss``, ``mix_weight`` and ``alpha`` left
    to ``None`` are resolved when training starts (``before_training_exp``)
    from the strategy's ``algorithm``; an explicit value always wins. In
    ``"fast"`` mode (:data:`ALGORITHM_DEFAULTS`, chosen on a 5,000-image
    validation split of Fashion-MNIST, 40 labels, 1,000 iterations, seeds
    0-2, lowest ECE at accuracy >= base - 0.5 point; the runs are in
    ``docs/results/ssl/select.jsonl`` and ``docs/calibratemix.md``):

    ==========  ======  ==========  =====  ===============================
    algorithm   loss    mix_weight  alpha  validation, 3 seeds (ECE, acc.)
    ==========  ======  ==========  =====  ===============================
    fixmatch    bce     1.0         1.0    -14.2% +- 4.4, -0.63 point
    softmatch   ce      0.5         1.0    -21.3% +- 18.9, -0.86 point
    flexmatch   ce      0.5         1.0    -25.0% +- 18.5, -0.26 point
    ==========  ======  ==========  =====  ===============================

    In ``"faithful"`` mode (the release's recipe) the release's values
    (:data:`RELEASE_DEFAULTS`: BCE, 1.0, 0.4). A pseudo-labeller of one's
    own that the table does not know gets the release's values and a
    ``UserWarning``. The resolved values are logged (``logging``, this
    module's logger), kept in :attr:`resolved` with their source in
    :attr:`resolved_from`, and set as :attr:`loss`, :attr:`mix_weight` and
    :attr:`alpha`.
    """

    def __init__(
        self,
        *,
        mode: str = "fast",
        warmup: int | float = RELEASE_WARMUP_FRACTION,
        alpha: float | None = None,
        k_fraction: float = DEFAULT_K_FRACTION,
        apm_delta: float = DEFAULT_APM_DELTA,
        loss: str | None = None,
        mix_weight: float | None = None,
        double_base_loss: bool | None = None,
        min_apm_updates: int = 1,
        split_rule: str = "dynamics",
        apm_dtype: torch.dtype = torch.float32,
        seed: int | None = None,
    ):
        """Build the plugin; every argument is keyword-only.

        :param mode: ``"fast"`` (default, see ``docs/calibratemix.md`` for the
            measured cost) or ``"faithful"``.
        :param warmup: iterations before mixing starts: an ``int`` number of
            iterations, or a ``float`` in ``[0, 1)``, the fraction of the
            experience's training iterations (default: the release's
            150,000 / 2^20, about 0.143). The count starts when the unlabeled
            dataset (hence the APM table) changes.
        :param alpha: ``Beta(alpha, alpha)`` of the mixing coefficients;
            ``None``: from the algorithm (see the class docstring; the release: 0.4).
        :param k_fraction: number of least-similar candidates as a fraction of the
            unlabeled batch (0.05; the release: 15 of 224).
        :param apm_delta: ``delta`` of the APM schedule ``delta / (1 + n)`` (0.997).
        :param loss: ``"bce"`` (sigmoid BCE, as released) or ``"ce"`` (softmax
            CE); ``None``: from the algorithm.
        :param mix_weight: weight of ``L_mix1 + L_mix2`` in the objective;
            ``None``: from the algorithm (the release: 1).
        :param double_base_loss: add the base SSL loss a second time (see the
            class docstring); ``None``: the mode's default.
        :param min_apm_updates: APM updates (this step's included) an unlabeled
            sample needs to be decided (1: every sample whose logits were finite).
        :param split_rule: ``"dynamics"`` (the method: AUM / APM) or ``"random"``,
            an ablation that splits both batches at random (uniform scores;
            undecided samples stay undecided), everything else unchanged.
        :param apm_dtype: storage dtype of the APM table (``torch.float16``
            halves its ``4 N C`` bytes, see :mod:`ssl_ext.dynamics`).
        :param seed: seed of the plugin's generator (lambdas, partner draws),
            created on the training device; ``None`` uses the device's default
            generator. CPU and CUDA draw different numbers for one seed.
        """
        super().__init__()
        check_choice("mode", mode, MODES)
        check_warmup(warmup)
        if loss is not None:
            check_choice("loss", loss, MIX_LOSSES)
        if not 0.0 < float(apm_delta) <= 1.0:
            raise ValueError(f"apm_delta must be in (0, 1], got {apm_delta}")
        if alpha is not None and not float(alpha) > 0:
            raise ValueError(f"alpha must be positive, got {alpha!r}")
        if mix_weight is not None and not float(mix_weight) >= 0:
            raise ValueError(f"mix_weight must be >= 0, got {mix_weight!r}")
        if double_base_loss is not None and not isinstance(double_base_loss, bool):
            raise ValueError(
                f"double_base_loss must be True, False or None, got {double_base_loss!r}"
            )
        min_apm_updates = check_positive_int("min_apm_updates", min_apm_updates)
        check_choice("split_rule", split_rule, SPLIT_RULES)
        self.split_rule = split_rule
        self.mode = mode
        self.warmup = warmup
        self.requested = {
            "loss": loss,
            "mix_weight": None if mix_weight is None else float(mix_weight),
            "alpha": None if alpha is None else float(alpha),
        }
        """The per-algorithm arguments as given (``None``: from the algorithm)."""
        self.resolved: dict | None = None
        """Their values once training started (``None`` before)."""
        self.resolved_from: dict | None = None
        """Where each resolved value came from (see :func:`resolve_defaults`)."""
        self.loss = loss
        self.mix_weight = self.requested["mix_weight"]
        self.alpha = self.requested["alpha"]
        self.k_fraction = check_k_fraction(k_fraction)
        self.apm_delta = float(apm_delta)
        self.double_base_loss = (
            (mode == "faithful") if double_base_loss is None else double_base_loss
        )
        self.min_apm_updates = min_apm_updates
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
        self.mixed: CalibrateMixBatch | None = None
        """This iteration's mixed batch, with the split it came from
        (``CalibrateMixBatch.split``); ``None`` when nothing is mixed."""
        self.history: list[dict] = []
        """Per experience: the means of :data:`DIAGNOSTICS` over its mixing
        iterations, and ``mixing_iterations``."""
        self._split_sums = SplitDiagnostics()
        self._resumed = False

    # ------------------------------------------------------------- setup
    def _generator_for(self, device) -> torch.Generator | None:
        """The seeded generator on the training device (created from ``seed``
        the first time it is needed there), or ``None`` without a seed (the
        device's default generator then draws)."""
        if self.generator is None:
            return None
        device = torch.device(device)
        if device.type != "cpu" and device.index is None:
            module = torch.get_device_module(device)
            device = torch.device(device.type, module.current_device())
        if self.generator.device != device:
            self.generator = torch.Generator(device=device).manual_seed(self.seed)
        return self.generator

    @property
    def active(self) -> bool:
        """True once the warm-up is over (mixing is on)."""
        return self.iteration >= self.warmup_iterations

    def before_training(self, strategy, **kwargs):
        # before any data is loaded: only the semi-supervised strategy has the
        # unlabeled batches and the second pass this plugin works on
        if not isinstance(strategy, SemiSupervisedStrategy):
            raise ValueError(
                "CalibrateMixPlugin mixes labeled and unlabeled samples, which only "
                f"ssl_ext.SemiSupervisedStrategy provides, not {type(strategy).__name__}:"
                " build SemiSupervisedStrategy(model=..., optimizer=..., unlabeled=..., "
                "algorithm=..., plugins=[CalibrateMixPlugin(...)])"
            )

    def before_training_exp(self, strategy: SemiSupervisedStrategy, **kwargs):
        if not isinstance(strategy, SemiSupervisedStrategy):
            raise ValueError(
                "CalibrateMixPlugin needs a SemiSupervisedStrategy, got "
                f"{type(strategy).__name__}"
            )
        self._resolve(strategy)
        self._prepare_tables(strategy)
        if isinstance(self.warmup, int):
            self.warmup_iterations = self.warmup
        else:
            total = strategy.experience_iterations
            self.warmup_iterations = int(round(self.warmup * total))
        if not self._resumed:  # a fresh experience, not a resume
            self._split_sums.reset(strategy.device)
        self._resumed = False

    def _resolve(self, strategy) -> None:
        """Set ``loss``, ``mix_weight`` and ``alpha`` from the arguments given
        and the strategy's algorithm (logged the first time)."""
        values, sources = resolve_defaults(
            self.mode, strategy.algorithm, self.requested
        )
        first = self.resolved != values
        self.resolved, self.resolved_from = values, sources
        self.loss = values["loss"]
        self.mix_weight = float(values["mix_weight"])
        self.alpha = float(values["alpha"])
        unknown = [k for k, v in sources.items() if v.startswith("release (")]
        if first and unknown:
            warnings.warn(
                "CalibrateMix has no validated defaults for the pseudo-labeller "
                f"{type(strategy.algorithm).__name__}: using the release's values "
                + ", ".join(f"{k}={values[k]!r}" for k in unknown)
                + f" (validated for: {', '.join(ALGORITHM_DEFAULTS)}); pass them "
                "explicitly to choose others",
                UserWarning,
                stacklevel=2,
            )
        if first:
            log.info(
                "CalibrateMix (%s mode): %s",
                self.mode,
                ", ".join(f"{k}={values[k]!r} ({sources[k]})" for k in values),
            )

    # ------------------------------------------------------ per iteration
    def _batch_ok(self, strategy) -> bool:
        if strategy.mb_index is None:
            raise ValueError(
                "CalibrateMix needs the labeled sample ids (strategy.mb_index)"
            )
        return strategy.mb_x.shape[0] >= 2 and strategy.mb_ulb_weak.shape[0] >= 2

    def split_scores(self, strategy) -> tuple[Tensor, Tensor, Tensor]:
        """The values the split reads now: ``(aum, apm, decided)`` of the batch.

        AUM of the labeled samples, APM of the unlabeled samples at their hard
        pseudo-label (arg-max of this step's raw weak logits), and whether
        each unlabeled sample has at least ``min_apm_updates`` APM updates.
        """
        index = strategy.mb_ulb_index
        pseudo = strategy.mb_ulb_weak_output.detach().argmax(dim=1)
        decided = self.apm.updates(index) >= self.min_apm_updates
        return (
            self.aum.value(strategy.mb_index),
            self.apm.value(index, pseudo),
            decided,
        )

    def after_forward(self, strategy, **kwargs):
        """Update AUM (every step) and APM (after the warm-up), detached, then
        split and pair this step's batches from the updated values.

        Under ``torch.distributed`` every rank's rows are gathered first, so the
        tables see all ranks' samples and stay identical on every rank.
        """
        self.mixed = None
        self.mix_loss = None
        logits, labels, index = strategy.gather_from_ranks(
            strategy.mb_output.detach(), strategy.mb_y, strategy.mb_index
        )
        self.aum.update(logits, labels, index)
        if not self.active:
            return
        weak, ulb_index = strategy.gather_from_ranks(
            strategy.mb_ulb_weak_output.detach(), strategy.mb_ulb_index
        )
        self.apm.update(weak, ulb_index)
        if not self._batch_ok(strategy):
            return
        aum, apm, decided = self.split_scores(strategy)
        if self.split_rule == "random":
            gen = self._generator_for(strategy.device)
            aum = torch.rand(aum.shape, generator=gen, device=aum.device)
            apm = torch.rand(apm.shape, generator=gen, device=apm.device)
        gen = self._generator_for(strategy.device)
        self.mixed = make_mixed_batch(
            strategy.mb_x,
            strategy.mb_ulb_weak,
            aum,
            apm,
            unlabeled_decided=decided,
            alpha=self.alpha,
            k_fraction=self.k_fraction,
            generator=gen,
        )
        self._split_sums.record(self.mixed)

    def before_backward(self, strategy, **kwargs):
        """Logits of the mixed samples (see the modes) and the mixed loss,
        added to ``strategy.loss`` (with the base loss again if asked)."""
        mixed = self.mixed
        if mixed is None:
            return
        extra = 0.0
        if self.mode == "fast":
            logits_mix = strategy.model_forward(mixed.x)
            if self.double_base_loss:
                extra = strategy.base_loss
        else:
            second = strategy.second_pass(
                {"mixed": mixed.x}, base_loss=self.double_base_loss
            )
            logits_mix = second.outputs["mixed"]
            if self.double_base_loss:
                extra = second.base.loss
        mix = calibratemix_loss(
            logits_mix,
            strategy.mb_y[mixed.labeled],
            strategy.mb_pseudo_labels[mixed.partner],
            mixed.lam,
            mixed.group,
            loss=self.loss,
            valid=mixed.valid,
            check_labels=False,  # the strategy validates labels once per experience
        )
        self.mix_loss = mix.detach()
        strategy.loss = strategy.loss + extra + self.mix_weight * mix

    def after_training_iteration(self, strategy, **kwargs):
        self.iteration += 1

    # ------------------------------------------------------ diagnostics
    def diagnostics(self) -> dict:
        """Means of :data:`DIAGNOSTICS` over the mixing iterations so far in
        this experience (NaN where a group was always empty)."""
        return self._split_sums.means()

    def after_training_exp(self, strategy, **kwargs):
        diag = self.diagnostics()
        diag["experience"] = int(strategy.experience.current_experience)
        self.history.append(diag)
        self._split_sums = SplitDiagnostics()
        evaluator = getattr(strategy, "evaluator", None)
        if evaluator is None or diag["mixing_iterations"] == 0:
            return
        # published before the evaluator's own after_training_exp, which hands
        # the values to every logger
        publish(evaluator, self, diag, strategy.clock.train_iterations)


__all__ = [
    "ALGORITHM_DEFAULTS",
    "DIAGNOSTICS",
    "MODES",
    "SPLIT_RULES",
    "RELEASE_DEFAULTS",
    "RELEASE_WARMUP_FRACTION",
    "TUNED_ARGUMENTS",
    "CalibrateMixPlugin",
    "algorithm_name",
    "resolve_defaults",
]
