"""Small real data and the strategy of the semi-supervised tests.

Used by the tests (through the fixtures of ``tests/conftest.py`` or
directly) and by the ``distributed/ssl_worker.py`` worker, which runs outside
pytest: plain functions, not fixtures.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from avalanche.training.plugins import EvaluationPlugin
from torch import nn
from torch.utils.data import TensorDataset

from avalanche_mixplugins.experiments.datasets import load_digits_tensors
from avalanche_mixplugins.experiments.streams import class_incremental_from_tensors
from ssl_ext import SemiSupervisedStrategy, SSLViews


def tensor_dataset(x: torch.Tensor, y: torch.Tensor) -> TensorDataset:
    """``TensorDataset(x, y)`` with the ``targets`` Avalanche reads."""
    dataset = TensorDataset(x, y)
    dataset.targets = y.tolist()
    return dataset


def padded_digits() -> tuple[torch.Tensor, ...]:
    """scikit-learn digits (seed 0 split) padded to 16x16, so that three
    poolings fit: ``(x_train, y_train, x_test, y_test)``."""
    x_tr, y_tr, x_te, y_te = load_digits_tensors()
    return F.pad(x_tr, (4, 4, 4, 4)), y_tr, F.pad(x_te, (4, 4, 4, 4)), y_te


def first_per_class(y: torch.Tensor, per_class: int) -> torch.Tensor:
    """Indices of the first ``per_class`` samples of each class 0..9."""
    return torch.cat([torch.nonzero(y == c)[:per_class, 0] for c in range(10)])


def ssl_digits(
    *,
    per_class: int,
    n_test: int,
    n_experiences: int = 1,
    n_unlabeled: int | None = None,
):
    """:func:`padded_digits`: ``per_class`` labeled images per class in a
    class-incremental benchmark of ``n_experiences`` (seed 0), the first
    ``n_test`` test images, and the train images (the first ``n_unlabeled``,
    default all) as the unlabeled dataset. Returns ``(benchmark, unlabeled)``."""
    x_tr, y_tr, x_te, y_te = padded_digits()
    lab = first_per_class(y_tr, per_class)
    bench = class_incremental_from_tensors(
        x_tr[lab],
        y_tr[lab],
        x_te[:n_test],
        y_te[:n_test],
        n_experiences=n_experiences,
        seed=0,
    )
    return bench, TensorDataset(x_tr[:n_unlabeled])


def training_experience(dataset):
    """The one training experience of a benchmark of ``dataset`` (an Avalanche
    dataset), built with Avalanche's ``benchmark_from_datasets``: a stream
    whose data the test changed, e.g. the sample ids."""
    from avalanche.benchmarks import (
        benchmark_from_datasets,
        with_classes_timeline,
        with_task_labels,
    )

    bench = benchmark_from_datasets(train=[dataset])
    return with_task_labels(with_classes_timeline(bench)).train_stream[0]


def ssl_strategy(
    model: nn.Module,
    unlabeled,
    plugins=(),
    *,
    lr: float = 0.03,
    momentum: float = 0.0,
    **kwargs,
) -> SemiSupervisedStrategy:
    """The strategy of the tests: SGD, FixMatch, ``B = 8``, ``mu = 2``, views
    without flips (digits), no loggers; every argument can be overridden."""
    options = {
        "algorithm": "fixmatch",
        "train_mb_size": 8,
        "mu": 2,
        "views": SSLViews(flip=False, group_size=8),
        "evaluator": EvaluationPlugin(loggers=[]),
    } | kwargs
    return SemiSupervisedStrategy(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum),
        unlabeled=unlabeled,
        plugins=list(plugins),
        **options,
    )
