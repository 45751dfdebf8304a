"""Semi-supervised Avalanche strategy: FixMatch, SoftMatch and FlexMatch.

:class:`SemiSupervisedStrategy` is a ``SupervisedTemplate`` whose labeled data
is each experience's dataset (so ``ReplayPlugin`` and other data plugins
compose as usual) and whose unlabeled data is a separate dataset given to the
strategy. Every iteration follows the USB recipe (Wang et al., "USB: A
Unified Semi-supervised Learning Benchmark", NeurIPS 2022):

1. a labeled batch of ``B = train_mb_size`` samples (weak view) and an
   unlabeled batch of ``mu * B`` samples with a weak and a strong view;
2. **one** forward of ``cat(labeled, unlabeled_weak, unlabeled_strong)``
   (plus any extra inputs registered by plugins, see below);
3. pseudo-labels and weights from the detached weak-view logits
   (:mod:`ssl_ext.algorithms`);
4. loss ``CE(labeled) + lambda_u * consistency(strong, pseudo-labels, weights)``.

Algorithms: FixMatch (Sohn et al., NeurIPS 2020), FlexMatch (Zhang et al.,
NeurIPS 2021) and SoftMatch (Chen et al., ICLR 2023), selected with
``algorithm=``; they share everything but the pseudo-labelling rule.

Callbacks. The loop is Avalanche's ``SGDUpdate.training_epoch``, unchanged,
so every plugin callback fires in the usual order. Each template step of an
iteration is made of named steps: ``_unpack_minibatch`` pops the sample ids,
builds the labeled view and ``_draw_unlabeled_batch`` (so the unlabeled views
exist from ``before_training_iteration`` on); ``forward`` is
``_joint_forward`` then ``pseudo_label``; ``criterion`` is
``_check_label_range`` then the base loss; ``backward`` / ``optimizer_step``
the AMP scaler, the skipped non-finite steps and the EMA teacher.

The strategy is Avalanche's template plus one mixin per idea (as Avalanche
builds its own templates):

* :mod:`ssl_ext.extension_points`: what a plugin may call (below);
* :mod:`ssl_ext.experience_setup`: sample ids, loaders, pseudo-labeller and
  EMA teacher when an experience starts (:mod:`ssl_ext.sample_ids`,
  :mod:`ssl_ext.loaders`: with ``train_iterations`` the epoch is a fixed
  number of iterations over a cycling labeled loader);
* :mod:`ssl_ext.pseudo_labelling`: statistics across ranks, NaN rows out;
* :mod:`ssl_ext.amp_ema`: mixed precision, EMA teacher, skipped steps;
* :mod:`ssl_ext.checkpoint_state`: its state for exact checkpoints.

What a plugin can read during a training iteration (all on ``device``):

=============================  ===============================================
``mb_x``, ``mb_y``              labeled weak views and labels (``mbatch``
                                holds ``[x, y, task]`` as in Avalanche)
``mb_index``                    dataset ids of the labeled samples (the
                                ``sample_id`` data attribute), or ``None``
``mb_ulb_x``, ``mb_ulb_index``  raw unlabeled images and their indices in the
                                unlabeled dataset
``mb_ulb_weak``,                weak and strong unlabeled views
``mb_ulb_strong``
``mb_output``                   labeled logits (after ``forward``)
``mb_ulb_weak_output``,         unlabeled logits (weak / strong)
``mb_ulb_strong_output``
``mb_pseudo``                   :class:`~ssl_ext.algorithms.PseudoLabels`
                                (``targets``, ``weights``, ``probs``)
``mb_pseudo_labels``,           shortcuts to ``mb_pseudo.targets`` and
``mb_mask``                     ``mb_pseudo.weights``
``sup_loss``, ``unsup_loss``,   the base loss terms (after ``criterion``):
``base_loss``                   ``base_loss = sup_loss + lambda_u * unsup_loss``
``mb_extra_output``             logits of extra inputs (see below)
=============================  ===============================================

Extension points (:mod:`ssl_ext.extension_points`; CalibrateMix,
arXiv:2511.12964, uses only these and the attributes above):
``add_forward_input`` (extra inputs in the main forward, in
``before_forward``), ``model_forward`` (a forward of some inputs alone),
``second_pass`` (the base step again with extra inputs, in
``before_backward``; its halves ``forward_parts`` and ``ssl_loss``) and
``gather_from_ranks``. A plugin adds its loss term to ``strategy.loss`` in
``before_backward``.

Labeled sample ids. Labeled samples carry a ``sample_id`` data attribute
(:data:`SAMPLE_ID`, :mod:`ssl_ext.sample_ids`). If an experience's dataset
does not have one, the strategy adds consecutive ids (continuing from the
previous experiences) to ``experience.dataset`` before the dataset adaptation,
so ReplayPlugin's buffer, which is filled from ``experience.dataset``, keeps
them; :func:`add_sample_ids` sets ids of your choice (e.g. the index in the
original training set). The id is removed from ``mbatch`` into ``mb_index``,
so ``mbatch`` keeps Avalanche's ``[x, y, task]`` layout for other plugins.

Data: labeled and unlabeled items are image tensors ``(C, H, W)`` (float in
``[0, 1]`` or uint8, any size, 1 or 3 channels) of the same size; unlabeled
items may be bare tensors or tuples whose first element is the image.
Augmentation happens on the batch, on ``device``
(:class:`~ssl_ext.views.SSLViews`); eval inputs only get the views'
normalisation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from avalanche.training.plugins.evaluation import default_evaluator
from avalanche.training.templates import SupervisedTemplate
from torch import Tensor, nn
from torch.utils.data import Dataset

from avalanche_mixplugins.validation import (
    check_choice,
    check_ema_decay,
    check_positive_int,
    check_train_iterations,
    check_unlabeled_source,
)
from ssl_ext.algorithms import ALGORITHMS, PseudoLabeler, PseudoLabels
from ssl_ext.amp_ema import AmpEmaUpdate, resolve_amp_dtype
from ssl_ext.checkpoint_state import SSLCheckpointState
from ssl_ext.experience_setup import ExperienceSetup
from ssl_ext.extension_points import ExtensionPoints, SecondPass, SSLLoss
from ssl_ext.loaders import CyclingIterator
from ssl_ext.pseudo_labelling import PseudoLabelling
from ssl_ext.sample_ids import SAMPLE_ID, IndexedDataset, add_sample_ids
from ssl_ext.sample_ids import (  # noqa: F401  (the name before the split)
    sample_id_position as _sample_id_position,
)
from ssl_ext.views import SSLViews


def _check_algorithm(algorithm, algorithm_kwargs: dict | None) -> None:
    """A name of :data:`~ssl_ext.algorithms.ALGORITHMS` or a ``PseudoLabeler``;
    ``algorithm_kwargs`` go with a name only."""
    if isinstance(algorithm, str):
        check_choice("algorithm", algorithm, ALGORITHMS)
    elif not isinstance(algorithm, PseudoLabeler):
        raise ValueError(
            f"algorithm must be a name in {ALGORITHMS} or a PseudoLabeler, got "
            f"{algorithm!r}"
        )
    if algorithm_kwargs is not None and not isinstance(algorithm, str):
        raise ValueError("algorithm_kwargs only apply to a named algorithm")


class SemiSupervisedStrategy(
    ExtensionPoints,
    ExperienceSetup,
    PseudoLabelling,
    AmpEmaUpdate,
    SSLCheckpointState,
    SupervisedTemplate,
):
    """FixMatch / SoftMatch / FlexMatch training as an Avalanche strategy.

    :param model: the classifier (e.g. ``timm.create_model("wrn28_2", ...)``).
    :param optimizer: its optimizer.
    :param unlabeled: the unlabeled data: one dataset for the whole stream, a
        list/tuple with one dataset per experience (indexed by
        ``experience.current_experience``), or a callable
        ``experience -> dataset``.
    :param algorithm: ``"fixmatch"``, ``"softmatch"``, ``"flexmatch"`` or a
        :class:`~ssl_ext.algorithms.PseudoLabeler` instance. A named algorithm
        is rebuilt (fresh statistics) whenever the unlabeled dataset changes.
    :param algorithm_kwargs: keyword arguments of the named algorithm (e.g.
        ``{"threshold": 0.95}``, ``{"n_sigma": 2.0}``).
    :param mu: unlabeled batch size as a multiple of ``train_mb_size`` (7).
    :param lambda_u: weight of the unsupervised loss (1).
    :param train_iterations: iterations per experience; ``None`` trains
        ``train_epochs`` passes over the labeled loader instead.
    :param views: weak/strong augmentation (default ``SSLViews()``).
    :param ema_decay: decay of an EMA teacher (``timm.utils.ModelEmaV3``;
        0.999 in USB) used for evaluation; ``None`` disables it.
    :param ema_warmup: ramp the EMA decay up as timm's ``ModelEmaV3`` warm-up
        does, ``min(ema_decay, 1 - (1 + t)^(-2/3))`` at optimizer step ``t``,
        so the teacher averages over a window that grows with training
        (about ``t^(2/3)`` steps, e.g. 100 after 1,000 steps) instead of
        ``1 / (1 - ema_decay)`` steps from the start: useful when the budget
        is short next to that time constant.
    :param amp: mixed precision with ``torch.autocast``: ``False``, ``True``
        (bfloat16 on CPU, float16 on CUDA), ``"bf16"`` or ``"fp16"`` (CUDA
        only, with a ``torch.amp.GradScaler``).
    :param channels_last: use the channels-last memory format; ``None`` means
        on CUDA only.
    :param criterion: supervised loss on the labeled logits (default
        ``nn.CrossEntropyLoss()``).
    :param train_mb_size: labeled batch size ``B``.
    :param train_epochs: epochs per experience (must be 1 with
        ``train_iterations``).
    :param eval_mb_size: evaluation batch size.
    :param device: where the model, the batches and the augmentation live.
    :param plugins: Avalanche plugins.
    :param evaluator: Avalanche ``EvaluationPlugin``.
    :param eval_every: periodic evaluation, as in ``SupervisedTemplate``.
    :param peval_mode: ``"epoch"`` or ``"iteration"``.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        unlabeled: Dataset | Sequence[Dataset] | Callable[[Any], Dataset],
        algorithm: str | PseudoLabeler = "fixmatch",
        algorithm_kwargs: dict | None = None,
        mu: int = 7,
        lambda_u: float = 1.0,
        train_iterations: int | None = None,
        views: SSLViews | None = None,
        ema_decay: float | None = None,
        ema_warmup: bool = False,
        amp: bool | str = False,
        channels_last: bool | None = None,
        criterion: nn.Module | None = None,
        train_mb_size: int = 64,
        train_epochs: int = 1,
        eval_mb_size: int | None = None,
        device: str | torch.device = "cpu",
        plugins: Sequence | None = None,
        evaluator=default_evaluator,
        eval_every: int = -1,
        peval_mode: str = "epoch",
        **kwargs,
    ):
        _check_algorithm(algorithm, algorithm_kwargs)
        mu = check_positive_int("mu", mu)
        if not float(lambda_u) >= 0:
            raise ValueError(f"lambda_u must be >= 0, got {lambda_u}")
        train_iterations = check_train_iterations(train_iterations, train_epochs)
        ema_decay = check_ema_decay(ema_decay)
        if views is not None and not isinstance(views, SSLViews):
            raise ValueError(f"views must be an SSLViews, got {type(views).__name__}")
        check_unlabeled_source(unlabeled)
        if isinstance(train_mb_size, bool) or int(train_mb_size) < 1:
            raise ValueError(
                f"train_mb_size must be a positive integer, got {train_mb_size}"
            )

        super().__init__(
            model=model,
            optimizer=optimizer,
            criterion=nn.CrossEntropyLoss() if criterion is None else criterion,
            train_mb_size=train_mb_size,
            train_epochs=train_epochs,
            eval_mb_size=train_mb_size if eval_mb_size is None else eval_mb_size,
            device=device,
            plugins=plugins,
            evaluator=evaluator,
            eval_every=eval_every,
            peval_mode=peval_mode,
            **kwargs,
        )
        self.unlabeled = unlabeled
        self.algorithm = algorithm
        self.algorithm_kwargs = dict(algorithm_kwargs or {})
        self.mu = mu
        self.lambda_u = float(lambda_u)
        self.train_iterations = train_iterations
        self.views = views if views is not None else SSLViews()
        self.ema_decay = ema_decay
        self.ema_warmup = bool(ema_warmup)
        self.amp_dtype = resolve_amp_dtype(amp, self.device)
        self.channels_last = (
            self.device.type == "cuda" if channels_last is None else bool(channels_last)
        )
        self.scaler = (
            torch.amp.GradScaler(self.device.type)
            if self.amp_dtype == torch.float16
            else None
        )
        self._init_update_state()
        self._init_pseudo_labelling_state()
        self._init_checkpoint_state()

        self.pseudo_labeler: PseudoLabeler | None = (
            algorithm if isinstance(algorithm, PseudoLabeler) else None
        )
        self.unlabeled_dataset: Dataset | None = None
        self._next_sample_id = 0
        self._exp_first_sample_id = 0
        self._train_id_pos: int | None = None
        self._eval_id_pos: int | None = None
        self._ulb_iter: CyclingIterator | None = None
        self._check_labels = True
        self._reset_iteration_state()

    # ------------------------------------------------------------------ setup
    def _reset_iteration_state(self) -> None:
        self.mb_index: Tensor | None = None
        self.mb_ulb_x: Tensor | None = None
        self.mb_ulb_index: Tensor | None = None
        self.mb_ulb_weak: Tensor | None = None
        self.mb_ulb_strong: Tensor | None = None
        self.mb_ulb_weak_output: Tensor | None = None
        self.mb_ulb_strong_output: Tensor | None = None
        self.mb_pseudo: PseudoLabels | None = None
        self.sup_loss: Tensor | None = None
        self.unsup_loss: Tensor | None = None
        self.base_loss: Tensor | None = None
        self.mb_extra_x: dict[str, Tensor] = {}
        self.mb_extra_output: dict[str, Tensor] = {}

    @property
    def mb_pseudo_labels(self) -> Tensor | None:
        """Hard pseudo-labels of the unlabeled batch (``(mu B,)``)."""
        return None if self.mb_pseudo is None else self.mb_pseudo.targets

    @property
    def mb_mask(self) -> Tensor | None:
        """Per-sample weights of the unlabeled batch (mask or soft weights)."""
        return None if self.mb_pseudo is None else self.mb_pseudo.weights

    # ------------------------------------------------- the training iteration
    def _unpack_minibatch(self):
        """Move the batch to ``device``, pop the sample ids; in training also
        draw the unlabeled batch and build the weak and strong views."""
        if isinstance(self.mbatch, tuple):
            self.mbatch = list(self.mbatch)
        pos = self._train_id_pos if self.is_training else self._eval_id_pos
        ids = self.mbatch.pop(pos) if pos is not None else None
        super()._unpack_minibatch()
        self._reset_iteration_state()
        if ids is not None:
            self.mb_index = ids.to(self.device, non_blocking=True)
        if not self.is_training:
            self.mbatch[0] = self.views.plain(self.mbatch[0])
            return
        self.mbatch[0] = self.views.weak(self.mbatch[0])
        self._draw_unlabeled_batch()

    def _draw_unlabeled_batch(self) -> None:
        """The next unlabeled batch, on ``device``, and its weak and strong views."""
        x_ulb, idx_ulb = next(self._ulb_iter)
        if x_ulb.shape[1:] != self.mbatch[0].shape[1:]:
            raise ValueError(
                f"unlabeled images have shape {tuple(x_ulb.shape[1:])} but labeled ones "
                f"{tuple(self.mbatch[0].shape[1:])}: both must have the same (C, H, W)"
            )
        self.mb_ulb_x = x_ulb.to(self.device, non_blocking=True)
        self.mb_ulb_index = idx_ulb.to(self.device, non_blocking=True)
        self.mb_ulb_weak, self.mb_ulb_strong = self.views(self.mb_ulb_x)

    def _joint_forward(self) -> Tensor:
        """The main pass: one forward of ``(labeled, weak, strong, *extra)``;
        sets the unlabeled and extra outputs, returns the labeled logits."""
        logits = self.forward_parts(
            self.mb_x, self.mb_ulb_weak, self.mb_ulb_strong, *self.mb_extra_x.values()
        )
        out_lb, self.mb_ulb_weak_output, self.mb_ulb_strong_output = logits[:3]
        self.mb_extra_output = dict(zip(self.mb_extra_x, logits[3:]))
        return out_lb

    def forward(self):
        """Joint forward and pseudo-labels in training (returns the labeled
        logits); the EMA teacher (if any) in evaluation."""
        if not self.is_training:
            return self.model_forward(self.mb_x, self._eval_model())
        out_lb = self._joint_forward()
        self.mb_pseudo = self.pseudo_label(self.mb_ulb_weak_output, self.mb_ulb_index)
        return out_lb

    def _check_label_range(self) -> None:
        """Once per experience (one host sync): labels must index the outputs."""
        if not self._check_labels:
            return
        self._check_labels = False
        n_out = self.mb_output.shape[1]
        if self.mb_y.numel() and (
            int(self.mb_y.max()) >= n_out or int(self.mb_y.min()) < 0
        ):
            raise ValueError(
                f"label {int(self.mb_y.max())} is outside the model's {n_out} "
                "outputs; give the model one output per class of the stream "
                "(e.g. timm.create_model(..., num_classes=<classes>))"
            )

    def criterion(self):
        """``sup_loss + lambda_u * unsup_loss`` in training, the criterion in eval."""
        if not self.is_training:
            return self._criterion(self.mb_output, self.mb_y)
        self._check_label_range()
        out = self._combine(
            self.mb_output, self.mb_y, self.mb_ulb_strong_output, self.mb_pseudo
        )
        self.sup_loss, self.unsup_loss = out.sup_loss, out.unsup_loss
        self.base_loss = out.loss
        return out.loss

    def _train_cleanup(self):
        super()._train_cleanup()
        self._reset_iteration_state()
        self._ulb_iter = None

    def _eval_cleanup(self):
        super()._eval_cleanup()
        self._reset_iteration_state()


__all__ = [
    "SAMPLE_ID",
    "IndexedDataset",
    "SSLLoss",
    "SecondPass",
    "SemiSupervisedStrategy",
    "add_sample_ids",
]
