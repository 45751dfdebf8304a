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
so every plugin callback fires in the usual order. The SSL work hooks into
the template's own steps: ``_unpack_minibatch`` also draws the unlabeled
batch and builds the views (so they exist from ``before_training_iteration``
on), ``forward`` runs the joint forward and pseudo-labelling, ``criterion``
the two losses, ``backward``/``optimizer_step`` the AMP scaler and the EMA
teacher. With ``train_iterations`` the epoch is a fixed number of
iterations over a cycling labeled loader.

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
``sup_loss``, ``unsup_loss``    the two base loss terms (after ``criterion``;
                                ``loss = sup_loss + lambda_u * unsup_loss``)
``mb_extra_output``             logits of extra inputs (see below)
=============================  ===============================================

Extension points (used by CalibrateMix, arXiv:2511.12964):

* *extra inputs in the main forward* ("fast" mode): in ``before_forward`` a
  plugin calls :meth:`SemiSupervisedStrategy.add_forward_input` with a name
  and a batch of inputs; they are concatenated to the joint forward and their
  logits are in ``mb_extra_output[name]`` from ``after_forward`` on; the
  plugin adds its loss to ``strategy.loss`` in ``before_backward``.
* *a second forward* ("faithful" mode): in ``before_backward`` a plugin calls
  :meth:`~SemiSupervisedStrategy.forward_parts` or
  :meth:`~SemiSupervisedStrategy.model_forward` (same autocast and memory
  format as the main pass) and :meth:`~SemiSupervisedStrategy.ssl_loss` to
  recompute the base loss on new logits, and adds the result to
  ``strategy.loss``.

Labeled sample ids. Labeled samples carry a ``sample_id`` data attribute
(:data:`SAMPLE_ID`) of the ``AvalancheDataset``. If an experience's dataset
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

import copy
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
from avalanche.benchmarks.utils import DataAttribute
from avalanche.models import MultiTaskModule
from avalanche.training.plugins.evaluation import default_evaluator
from avalanche.training.templates import SupervisedTemplate
from timm.utils import ModelEmaV3
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ssl_ext.algorithms import (
    ALGORITHMS,
    PseudoLabeler,
    PseudoLabels,
    consistency_loss,
    make_pseudo_labeler,
)
from ssl_ext.views import SSLViews

SAMPLE_ID = "sample_id"
"""Name of the data attribute holding labeled sample ids."""


class SSLLoss(NamedTuple):
    """Base SSL loss of one pass: ``loss = sup_loss + lambda_u * unsup_loss``."""

    loss: Tensor
    sup_loss: Tensor
    unsup_loss: Tensor
    pseudo: PseudoLabels


class IndexedDataset(Dataset):
    """Wrap an unlabeled dataset so items are ``(image, index)``.

    :param dataset: a map-style dataset whose items are image tensors or
        tuples/lists starting with the image (other fields are dropped).
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        item = self.dataset[index]
        if isinstance(item, tuple | list):
            item = item[0]
        if not isinstance(item, Tensor):
            raise TypeError(
                "unlabeled items must be image tensors (C, H, W) or tuples starting "
                f"with one; got {type(item).__name__} (add a ToImage/ToTensor transform)"
            )
        return item, index


def add_sample_ids(
    dataset, ids: Sequence[int] | Tensor | None = None, *, offset: int = 0
):
    """Return ``dataset`` (an ``AvalancheDataset``) with a ``sample_id`` attribute.

    The attribute is returned by ``__getitem__`` (``use_in_getitem=True``) and
    survives ``subset``/``concat``/``train()``, hence ReplayPlugin's buffer.

    :param dataset: an Avalanche dataset (e.g. ``experience.dataset``).
    :param ids: one integer per sample; default ``offset + arange(len)``.
    :param offset: first id when ``ids`` is not given.
    """
    if not hasattr(dataset, "update_data_attribute"):
        raise ValueError(
            f"add_sample_ids needs an AvalancheDataset, got {type(dataset).__name__} "
            "(wrap it with avalanche.benchmarks.utils.as_classification_dataset)"
        )
    n = len(dataset)
    if ids is None:
        ids = list(range(offset, offset + n))
    elif isinstance(ids, Tensor):
        ids = ids.tolist()
    else:
        ids = [int(i) for i in ids]
    if len(ids) != n:
        raise ValueError(f"got {len(ids)} ids for a dataset of {n} samples")
    _check_unique_ids(ids)
    return dataset.update_data_attribute(
        SAMPLE_ID, DataAttribute(ids, SAMPLE_ID, use_in_getitem=True)
    )


def _check_unique_ids(ids: Sequence[int] | Tensor) -> None:
    """Labeled sample ids key per-sample tables (e.g. CalibrateMix's AUM):
    two samples must never share one."""
    ids = torch.as_tensor(ids)
    if ids.numel() and torch.unique(ids).numel() != ids.numel():
        values, counts = torch.unique(ids, return_counts=True)
        dup = values[counts > 1][:5].tolist()
        raise ValueError(
            f"labeled sample ids collide (ids {dup} are used more than once): give "
            "every labeled sample its own id, e.g. add_sample_ids(dataset, ids=<index "
            "in the original training set>), or leave the ids out and the strategy "
            "numbers the samples"
        )


def _sample_id_position(dataset) -> int | None:
    """Position (negative, from the end) of ``sample_id`` in the dataset's items."""
    attributes = getattr(dataset, "_data_attributes", None)
    if not attributes:
        return None
    names = [name for name, attr in attributes.items() if attr.use_in_getitem]
    if SAMPLE_ID not in names:
        return None
    return names.index(SAMPLE_ID) - len(names)


def _set_experience_dataset(experience, dataset) -> None:
    """Replace an experience's dataset (read-only property in Avalanche 0.6's
    ``DatasetExperience``, a plain attribute in the legacy scenarios)."""
    try:
        experience.dataset = dataset
    except AttributeError:
        experience._dataset = dataset


def _fast_forward(loader, position: dict) -> tuple[Iterator, int]:
    """Re-open ``loader``'s pass with the global RNG state it began with and
    skip the batches already drawn; the global RNG state is left unchanged."""
    current = torch.get_rng_state()
    torch.set_rng_state(position["pass_rng"])
    try:
        iterator = iter(loader)
        for _ in range(position["in_pass"]):
            next(iterator)
    finally:
        torch.set_rng_state(current)
    return iterator, position["in_pass"]


class _IterationLoader:
    """Iterate a loader cyclically for exactly ``n`` batches (has ``__len__``).

    It records where it is (:meth:`position`: batches done, the global RNG
    state when the current pass over ``loader`` began, batches drawn in that
    pass), and, given such a ``resume`` position and the global RNG state
    ``rng`` of the interrupted run, continues exactly where that run stopped.
    """

    def __init__(self, loader, n: int, resume: dict | None = None):
        self.loader = loader
        self.n = n
        self.done = 0
        self.pass_rng: Tensor | None = None
        self.in_pass = 0
        self._resume = resume

    def __len__(self) -> int:
        return self.n

    def position(self) -> dict:
        return {"done": self.done, "pass_rng": self.pass_rng, "in_pass": self.in_pass}

    def _open(self) -> Iterator:
        self.pass_rng = torch.get_rng_state()
        self.in_pass = 0
        return iter(self.loader)

    def __iter__(self) -> Iterator:
        resume, self._resume = self._resume, None
        self.done = 0
        iterator = None
        if resume is not None:
            self.done = int(resume["labeled"]["done"])
            if resume["labeled"]["pass_rng"] is not None:
                iterator, self.in_pass = _fast_forward(self.loader, resume["labeled"])
                self.pass_rng = resume["labeled"]["pass_rng"]
            torch.set_rng_state(resume["rng"])
        while self.done < self.n:
            if iterator is None:
                iterator = self._open()
            batch = next(iterator, None)
            if batch is None:
                if self.in_pass == 0:
                    raise RuntimeError("the labeled data loader is empty")
                iterator = None
                continue
            self.in_pass += 1
            self.done += 1
            yield batch


class _CyclingIterator:
    """Draw batches from ``loader`` forever, pass after pass (a
    ``DistributedSampler`` gets ``set_epoch`` per pass); records its
    :meth:`position` and resumes from one like :class:`_IterationLoader`."""

    def __init__(self, loader, resume: dict | None = None):
        self.loader = loader
        self.epoch = -1
        self.pass_rng: Tensor | None = None
        self.in_pass = 0
        self._iterator: Iterator | None = None
        self._resume = resume

    def position(self) -> dict:
        return {"epoch": self.epoch, "pass_rng": self.pass_rng, "in_pass": self.in_pass}

    def _open(self) -> None:
        self.epoch += 1
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)
        self.pass_rng = torch.get_rng_state()
        self.in_pass = 0
        self._iterator = iter(self.loader)

    def __iter__(self) -> Iterator:
        return self

    def __next__(self):
        resume, self._resume = self._resume, None
        if resume is not None and resume["pass_rng"] is not None:
            self.epoch = int(resume["epoch"])
            sampler = getattr(self.loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(self.epoch)
            self._iterator, self.in_pass = _fast_forward(self.loader, resume)
            self.pass_rng = resume["pass_rng"]
        for _ in range(2):
            if self._iterator is None:
                self._open()
            batch = next(self._iterator, None)
            if batch is not None:
                self.in_pass += 1
                return batch
            self._iterator = None
        raise RuntimeError("the unlabeled data loader is empty")


def _world() -> tuple[int, int]:
    """``(rank, world_size)`` of a running ``torch.distributed`` group, else ``(0, 1)``."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_gather_rows(x: Tensor) -> tuple[Tensor, list[int]]:
    """Concatenate ``x`` (first dimension may differ) from every rank, in rank order."""
    dist = torch.distributed
    _, world = _world()
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    padded = x.new_zeros((max(sizes), *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)]), sizes


class SemiSupervisedStrategy(SupervisedTemplate):
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
        if isinstance(algorithm, str):
            if algorithm not in ALGORITHMS:
                raise ValueError(
                    f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}"
                )
        elif not isinstance(algorithm, PseudoLabeler):
            raise ValueError(
                f"algorithm must be a name in {ALGORITHMS} or a PseudoLabeler, got {algorithm!r}"
            )
        if algorithm_kwargs is not None and not isinstance(algorithm, str):
            raise ValueError("algorithm_kwargs only apply to a named algorithm")
        if isinstance(mu, bool) or int(mu) != mu or mu < 1:
            raise ValueError(f"mu must be a positive integer, got {mu!r}")
        if not float(lambda_u) >= 0:
            raise ValueError(f"lambda_u must be >= 0, got {lambda_u}")
        if train_iterations is not None:
            if int(train_iterations) != train_iterations or train_iterations < 1:
                raise ValueError(
                    f"train_iterations must be a positive integer or None, got "
                    f"{train_iterations!r}"
                )
            if train_epochs != 1:
                raise ValueError(
                    "give either train_iterations or train_epochs, not both"
                )
        if ema_decay is not None and not 0.0 <= float(ema_decay) < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) or None, got {ema_decay}")
        if views is not None and not isinstance(views, SSLViews):
            raise ValueError(f"views must be an SSLViews, got {type(views).__name__}")
        if not (
            isinstance(unlabeled, Dataset | list | tuple)
            or (callable(unlabeled) and not isinstance(unlabeled, Dataset))
        ):
            raise ValueError(
                "unlabeled must be a Dataset, a list/tuple of datasets (one per "
                f"experience) or a callable experience -> dataset; got {type(unlabeled)}"
            )
        if isinstance(unlabeled, list | tuple) and len(unlabeled) == 0:
            raise ValueError("unlabeled is an empty list")
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
        self.mu = int(mu)
        self.lambda_u = float(lambda_u)
        self.train_iterations = (
            None if train_iterations is None else int(train_iterations)
        )
        self.views = views if views is not None else SSLViews()
        self.ema_decay = None if ema_decay is None else float(ema_decay)
        self.ema_warmup = bool(ema_warmup)
        self.ema_steps = 0
        """Optimizer steps the EMA teacher has averaged (its warm-up clock)."""
        self.amp_dtype = self._resolve_amp(amp)
        self.channels_last = (
            self.device.type == "cuda" if channels_last is None else bool(channels_last)
        )
        self.scaler = (
            torch.amp.GradScaler(self.device.type)
            if self.amp_dtype == torch.float16
            else None
        )

        self.pseudo_labeler: PseudoLabeler | None = (
            algorithm if isinstance(algorithm, PseudoLabeler) else None
        )
        self.ema: ModelEmaV3 | None = None
        self.unlabeled_dataset: Dataset | None = None
        self._next_sample_id = 0
        self._exp_first_sample_id = 0
        self._train_id_pos: int | None = None
        self._eval_id_pos: int | None = None
        self._ulb_iter: _CyclingIterator | None = None
        self._resume_position: dict | None = None
        self._check_labels = True
        self._warned: set[str] = set()
        self.nonfinite_batches = 0
        """Unlabeled batches with NaN or inf logits (left out of the statistics)."""
        self.skipped_steps = 0
        """Training steps skipped because the loss or gradients were NaN or inf."""
        self._pending_labeler: dict | None = None
        self._reset_iteration_state()

    # ------------------------------------------------------------------ setup
    def _resolve_amp(self, amp: bool | str) -> torch.dtype | None:
        if amp is False or amp is None:
            return None
        if amp is True:
            return torch.float16 if self.device.type == "cuda" else torch.bfloat16
        if amp == "bf16":
            return torch.bfloat16
        if amp == "fp16":
            if self.device.type != "cuda":
                raise ValueError("amp='fp16' needs a CUDA device; use 'bf16' on CPU")
            return torch.float16
        raise ValueError(f"amp must be False, True, 'bf16' or 'fp16', got {amp!r}")

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

    def _unlabeled_for(self, experience) -> Dataset:
        source = self.unlabeled
        if isinstance(source, list | tuple):
            i = experience.current_experience
            if i >= len(source):
                raise ValueError(
                    f"no unlabeled dataset for experience {i}: {len(source)} were given"
                )
            dataset = source[i]
        elif isinstance(source, Dataset):
            dataset = source
        else:
            dataset = source(experience)
        if not isinstance(dataset, Dataset) or len(dataset) == 0:
            raise ValueError(
                f"the unlabeled dataset of experience {experience.current_experience} "
                f"is empty or not a Dataset: {dataset!r}"
            )
        return dataset

    def train_dataset_adaptation(self, **kwargs):
        """Give the experience's samples ids (if missing), then adapt as usual."""
        exp = self.experience
        self._exp_first_sample_id = self._next_sample_id
        if _sample_id_position(exp.dataset) is None:
            n = len(exp.dataset)
            _set_experience_dataset(
                exp, add_sample_ids(exp.dataset, offset=self._next_sample_id)
            )
            self._next_sample_id += n
        else:
            # ids given by the user: later automatic ids start after them
            ids = torch.as_tensor(list(getattr(exp.dataset, SAMPLE_ID)))
            _check_unique_ids(ids)
            if ids.numel():
                self._next_sample_id = max(self._next_sample_id, int(ids.max()) + 1)
        super().train_dataset_adaptation(**kwargs)

    def make_train_dataloader(
        self, num_workers=0, shuffle=True, pin_memory=None, **kwargs
    ):
        """Labeled loader as in Avalanche, plus the cycling unlabeled loader."""
        super().make_train_dataloader(
            num_workers=num_workers, shuffle=shuffle, pin_memory=pin_memory, **kwargs
        )
        self._train_id_pos = _sample_id_position(self.adapted_dataset)
        self._check_labels = True
        dataset = self._unlabeled_for(self.experience)
        if dataset is not self.unlabeled_dataset:
            self.unlabeled_dataset = dataset
            if isinstance(self.algorithm, str):
                self.pseudo_labeler = make_pseudo_labeler(
                    self.algorithm, num_unlabeled=len(dataset), **self.algorithm_kwargs
                )
                pending, self._pending_labeler = self._pending_labeler, None
                if pending is not None and pending["key"] == self._unlabeled_key():
                    self.pseudo_labeler.load_state_dict(pending["state"])
        batch = self.mu * self.train_mb_size
        rank, world = _world()
        indexed = IndexedDataset(dataset)
        sampler = None
        if world > 1:
            # each rank draws its own share of the unlabeled data
            seed = torch.randint(0, 2**31 - 1, (1,))
            torch.distributed.broadcast(seed, src=0)
            sampler = DistributedSampler(
                indexed, num_replicas=world, rank=rank, shuffle=True, seed=int(seed)
            )
        n_local = len(dataset) if sampler is None else len(sampler)
        if n_local < batch:
            warnings.warn(
                f"the unlabeled dataset has {n_local} samples (per rank), fewer than "
                f"one unlabeled batch of mu * train_mb_size = {batch}: every batch "
                "holds all of them; lower mu or train_mb_size, or add unlabeled data",
                RuntimeWarning,
                stacklevel=2,
            )
        loader = DataLoader(
            indexed,
            batch_size=batch,
            shuffle=sampler is None,
            sampler=sampler,
            drop_last=n_local >= batch,
            num_workers=num_workers,
            pin_memory=self.device.type == "cuda" if pin_memory is None else pin_memory,
        )
        resume = self._resume_for(self.experience)
        self._ulb_iter = _CyclingIterator(
            loader, resume=None if resume is None else resume["unlabeled"]
        )

    def _unlabeled_key(self) -> int | None:
        """Which unlabeled dataset the pseudo-labeller's statistics belong to:
        the position in a list of datasets, 0 for a single dataset, the
        experience for a callable."""
        source = self.unlabeled
        if isinstance(source, Dataset):
            return 0
        if isinstance(source, list | tuple):
            for i, d in enumerate(source):
                if d is self.unlabeled_dataset:
                    return i
            return None
        return None if self.experience is None else self.experience.current_experience

    def _resume_for(self, experience) -> dict | None:
        """The saved mid-experience position, if it is this experience's."""
        pos = self._resume_position
        if pos is None or experience is None:
            return None
        if pos["experience"] != experience.current_experience:
            return None
        return pos

    def make_eval_dataloader(self, **kwargs):
        super().make_eval_dataloader(**kwargs)
        self._eval_id_pos = _sample_id_position(self.adapted_dataset)

    def check_model_and_optimizer(self, **kwargs):
        """Avalanche's model adaptation, then the SSL setup (memory format,
        statistics on ``device``, EMA teacher), before ``before_training_exp``."""
        super().check_model_and_optimizer(**kwargs)
        if isinstance(self.model, MultiTaskModule):
            raise ValueError("SemiSupervisedStrategy supports single-head models only")
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.pseudo_labeler is not None:
            self.pseudo_labeler.to(self.device)
        if self.ema_decay is not None:
            self._sync_ema()

    def _before_eval_exp(self, **kwargs):
        super()._before_eval_exp(**kwargs)
        if self.ema is not None:
            self._sync_ema()

    def _new_ema(self) -> ModelEmaV3:
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

    def _before_training_epoch(self, **kwargs):
        resume = self._resume_for(self.experience)
        self._resume_position = None
        if self.train_iterations is not None and not isinstance(
            self.dataloader, _IterationLoader
        ):
            self.dataloader = _IterationLoader(
                self.dataloader, self.train_iterations, resume=resume
            )
        super()._before_training_epoch(**kwargs)
        if resume is not None:
            # the clock reset its per-experience counters: put back the done part
            done = int(resume["labeled"]["done"])
            self.clock.train_exp_iterations = done
            self.clock.train_epoch_iterations = done

    # -------------------------------------------------------------- minibatch
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
        x_ulb, idx_ulb = next(self._ulb_iter)
        if x_ulb.shape[1:] != self.mbatch[0].shape[1:]:
            raise ValueError(
                f"unlabeled images have shape {tuple(x_ulb.shape[1:])} but labeled ones "
                f"{tuple(self.mbatch[0].shape[1:])}: both must have the same (C, H, W)"
            )
        self.mb_ulb_x = x_ulb.to(self.device, non_blocking=True)
        self.mb_ulb_index = idx_ulb.to(self.device, non_blocking=True)
        self.mb_ulb_weak, self.mb_ulb_strong = self.views(self.mb_ulb_x)

    # ---------------------------------------------------------------- forward
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
        if x.shape[1:] != self.mb_x.shape[1:]:
            raise ValueError(
                f"extra input {name!r} has sample shape {tuple(x.shape[1:])}, "
                f"expected {tuple(self.mb_x.shape[1:])}"
            )
        self.mb_extra_x[name] = x

    def _autocast(self):
        return torch.autocast(
            self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None
        )

    def model_forward(self, x: Tensor, model: nn.Module | None = None) -> Tensor:
        """Run ``model`` (default the trained model) with the strategy's AMP and
        memory format; returns float32 logits."""
        model = self.model if model is None else model
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            out = model(x)
        return out.float()

    def pseudo_label(
        self, logits_weak: Tensor, index: Tensor | None = None, *, update: bool = True
    ) -> PseudoLabels:
        """Pseudo-labels and weights of unlabeled weak-view logits (detached).

        Under ``torch.distributed`` an updating call gathers every rank's
        logits and indices first, so the statistics (SoftMatch's, FlexMatch's
        thresholds, distribution alignment) see every rank's samples and stay
        identical on all ranks; the rows of this rank are returned.
        """
        logits = logits_weak.detach()
        rank, world = _world()
        if not update or world == 1:
            return self._label_finite(logits, index, update)
        all_logits, sizes = _all_gather_rows(logits.float())
        all_index = None if index is None else _all_gather_rows(index)[0]
        out = self._label_finite(all_logits, all_index, True)
        start = sum(sizes[:rank])
        rows = slice(start, start + sizes[rank])
        return PseudoLabels(out.targets[rows], out.weights[rows], out.probs[rows])

    def gather_from_ranks(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        """Each tensor's rows from every rank, concatenated in rank order (the
        tensors themselves outside ``torch.distributed``).

        For plugins whose per-sample tables must see every rank's samples
        (e.g. AUM/APM updates from ``mb_output``/``mb_y``/``mb_index``): call
        it on every rank at the same point of the iteration.
        """
        if _world()[1] == 1:
            return tensors
        return tuple(_all_gather_rows(t)[0] for t in tensors)

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    def _label_finite(
        self, logits: Tensor, index: Tensor | None, update: bool
    ) -> PseudoLabels:
        """Pseudo-label; rows with NaN or inf never reach the statistics.

        In a batch with non-finite rows (one host sync per call tells), the
        finite rows update the statistics, then every row is labelled without
        update and the non-finite rows get weight 0.
        """
        finite = torch.isfinite(logits).all(dim=1)
        if bool(finite.all()):
            return self.pseudo_labeler(logits, index=index, update=update)
        self.nonfinite_batches += 1
        self._warn_once(
            "logits",
            "NaN or inf in the unlabeled logits: those samples are left out of the "
            "pseudo-labelling statistics and get weight 0 (count in "
            "strategy.nonfinite_batches); check the inputs for NaN/inf, or lower "
            "the learning rate",
        )
        if update and bool(finite.any()):
            self.pseudo_labeler(
                logits[finite],
                index=None if index is None else index[finite],
                update=True,
            )
        clean = torch.nan_to_num(logits, nan=0.0, posinf=0.0, neginf=0.0)
        out = self.pseudo_labeler(clean, index=index, update=False)
        weights = torch.where(finite, out.weights, torch.zeros_like(out.weights))
        return PseudoLabels(out.targets, weights, out.probs)

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
        sup = self._criterion(logits_lb, y_lb)
        unsup = consistency_loss(logits_strong, pseudo.targets, pseudo.weights)
        return SSLLoss(sup + self.lambda_u * unsup, sup, unsup, pseudo)

    def forward_parts(
        self, *parts: Tensor, model: nn.Module | None = None
    ) -> tuple[Tensor, ...]:
        """One forward of ``cat(parts)``; returns the logits split like ``parts``.

        This is the joint forward of the main pass, available to plugins for a
        second pass (e.g. ``(labeled, mixed, weak, strong)``).
        """
        sizes = [p.shape[0] for p in parts]
        return self.model_forward(torch.cat(parts), model).split(sizes)

    def forward(self):
        """Joint forward in training (sets the unlabeled outputs and pseudo-labels,
        returns the labeled logits); the EMA teacher (if any) in evaluation."""
        if not self.is_training:
            model = self.ema.module if self.ema is not None else self.model
            return self.model_forward(self.mb_x, model)
        logits = self.forward_parts(
            self.mb_x, self.mb_ulb_weak, self.mb_ulb_strong, *self.mb_extra_x.values()
        )
        out_lb, self.mb_ulb_weak_output, self.mb_ulb_strong_output = logits[:3]
        self.mb_extra_output = dict(zip(self.mb_extra_x, logits[3:]))
        self.mb_pseudo = self.pseudo_label(self.mb_ulb_weak_output, self.mb_ulb_index)
        return out_lb

    def criterion(self):
        """``sup_loss + lambda_u * unsup_loss`` in training, the criterion in eval."""
        if not self.is_training:
            return self._criterion(self.mb_output, self.mb_y)
        if self._check_labels:
            # once per experience (one host sync): labels must index the outputs
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
        self.sup_loss = self._criterion(self.mb_output, self.mb_y)
        self.unsup_loss = consistency_loss(
            self.mb_ulb_strong_output, self.mb_pseudo.targets, self.mb_pseudo.weights
        )
        return self.sup_loss + self.lambda_u * self.unsup_loss

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
            self._warn_once(
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

    # ------------------------------------------------------------ checkpoints
    def ssl_state_dict(self) -> dict:
        """Statistics of the pseudo-labeller, EMA teacher and AMP scaler, and,
        during a training iteration with ``train_iterations``, the position in
        the experience (see :meth:`training_position`)."""
        state = {
            "pseudo_labeler": None
            if self.pseudo_labeler is None
            else copy.deepcopy(self.pseudo_labeler.state_dict()),
            "unlabeled_key": self._unlabeled_key(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "ema_steps": self.ema_steps,
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "next_sample_id": self._next_sample_id,
            "position": self.training_position(),
        }
        if state["position"] is not None:
            # the experience is trained again on resume: it takes the same ids
            state["next_sample_id"] = self._exp_first_sample_id
        return state

    def training_position(self) -> dict | None:
        """Where training is inside the current experience, or ``None``.

        Defined while training with ``train_iterations`` (call it after an
        iteration, e.g. from ``after_training_iteration``): the experience,
        iterations done, the labeled and unlabeled loaders' positions (global
        RNG state when their current pass began, batches drawn in it) and the
        global torch RNG state. :meth:`load_ssl_state_dict` with it makes the
        next ``train()`` of that experience continue with the next iteration.
        """
        if not (
            self.is_training
            and isinstance(self.dataloader, _IterationLoader)
            and self._ulb_iter is not None
        ):
            return None
        return {
            "experience": int(self.experience.current_experience),
            "iteration": self.dataloader.done,
            "labeled": self.dataloader.position(),
            "unlabeled": self._ulb_iter.position(),
            "rng": torch.get_rng_state(),
        }

    def load_ssl_state_dict(self, state: dict) -> None:
        """Restore :meth:`ssl_state_dict` (call after the first experience's setup
        for the EMA, which is created from the model)."""
        if state.get("pseudo_labeler") is not None:
            if isinstance(self.algorithm, str) and self.unlabeled_dataset is None:
                # a named algorithm is built with the first unlabeled dataset:
                # the statistics are loaded then, if they belong to that dataset
                self._pending_labeler = {
                    "state": state["pseudo_labeler"],
                    "key": state.get("unlabeled_key"),
                }
            elif self.pseudo_labeler is None:
                warnings.warn(
                    "no pseudo-labeller yet: its state was not restored", stacklevel=2
                )
            else:
                self.pseudo_labeler.load_state_dict(state["pseudo_labeler"])
        self._resume_position = state.get("position")
        if state.get("ema") is not None:
            if self.ema is None:
                self.ema = self._new_ema()
            self.ema.load_state_dict(state["ema"])
        self.ema_steps = int(state.get("ema_steps", self.ema_steps))
        if state.get("scaler") is not None and self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
        self._next_sample_id = int(state.get("next_sample_id", self._next_sample_id))

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
    "SemiSupervisedStrategy",
    "add_sample_ids",
]
