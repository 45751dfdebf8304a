"""What the semi-supervised strategy does when an experience starts.

A template mixin of :class:`~ssl_ext.strategy.SemiSupervisedStrategy`,
overriding the setup steps of Avalanche's template:

* ``train_dataset_adaptation``: labeled samples get ids
  (:mod:`ssl_ext.sample_ids`) if the experience's dataset has none, before
  the adaptation, so a replay buffer filled from ``experience.dataset`` keeps
  them;
* ``make_train_dataloader``: Avalanche's labeled loader, the experience's
  unlabeled dataset (:meth:`ExperienceSetup._unlabeled_for`), a fresh
  pseudo-labeller when that dataset changes, and the cycling unlabeled loader
  (:mod:`ssl_ext.loaders`), re-positioned when resuming;
* ``check_model_and_optimizer``: memory format, statistics on ``device``,
  the EMA teacher (created, or rebuilt for a grown model);
* ``_before_training_epoch``: with ``train_iterations``, the labeled loader
  becomes a fixed number of iterations (resumed where a checkpoint stopped).
"""

from __future__ import annotations

import torch
from avalanche.models import MultiTaskModule
from torch.utils.data import Dataset

from avalanche_mixplugins.validation import check_unique_ids
from ssl_ext.algorithms import make_pseudo_labeler
from ssl_ext.loaders import CyclingIterator, IterationLoader, unlabeled_loader
from ssl_ext.sample_ids import (
    SAMPLE_ID,
    add_sample_ids,
    sample_id_position,
    set_experience_dataset,
)


class ExperienceSetup:
    """Template mixin: the per-experience setup of the semi-supervised strategy."""

    @property
    def experience_iterations(self) -> int:
        """Training iterations of the current experience (``train_iterations``,
        else batches per epoch times ``train_epochs``); from
        ``before_training_exp`` on."""
        if self.train_iterations is not None:
            return self.train_iterations
        return len(self.dataloader) * self.train_epochs

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
        if sample_id_position(exp.dataset) is None:
            n = len(exp.dataset)
            set_experience_dataset(
                exp, add_sample_ids(exp.dataset, offset=self._next_sample_id)
            )
            self._next_sample_id += n
        else:
            # ids given by the user: later automatic ids start after them
            ids = torch.as_tensor(list(getattr(exp.dataset, SAMPLE_ID)))
            check_unique_ids(ids)
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
        self._train_id_pos = sample_id_position(self.adapted_dataset)
        self._check_labels = True
        dataset = self._unlabeled_for(self.experience)
        if dataset is not self.unlabeled_dataset:
            self.unlabeled_dataset = dataset
            if isinstance(self.algorithm, str):
                self.pseudo_labeler = make_pseudo_labeler(
                    self.algorithm, num_unlabeled=len(dataset), **self.algorithm_kwargs
                )
                self._restore_pending_labeler()
        loader = unlabeled_loader(
            dataset,
            batch_size=self.mu * self.train_mb_size,
            num_workers=num_workers,
            pin_memory=self.device.type == "cuda" if pin_memory is None else pin_memory,
        )
        resume = self._resume_for(self.experience)
        self._ulb_iter = CyclingIterator(
            loader, resume=None if resume is None else resume["unlabeled"]
        )

    def make_eval_dataloader(self, **kwargs):
        super().make_eval_dataloader(**kwargs)
        self._eval_id_pos = sample_id_position(self.adapted_dataset)

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

    def _before_training_epoch(self, **kwargs):
        resume = self._resume_for(self.experience)
        self._resume_position = None
        if self.train_iterations is not None and not isinstance(
            self.dataloader, IterationLoader
        ):
            self.dataloader = IterationLoader(
                self.dataloader, self.train_iterations, resume=resume
            )
        super()._before_training_epoch(**kwargs)
        if resume is not None:
            # the clock reset its per-experience counters: put back the done part
            done = int(resume["labeled"]["done"])
            self.clock.train_exp_iterations = done
            self.clock.train_epoch_iterations = done


__all__ = ["ExperienceSetup"]
