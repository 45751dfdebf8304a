"""Small real data, a model and a strategy shared by the semi-supervised tests.

Imported by ``test_calibratemix.py``, ``test_checkpoint.py`` and the
``distributed_ssl.py`` worker (which runs outside pytest, so these are plain
functions rather than fixtures).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from avalanche.benchmarks import nc_benchmark
from avalanche.training.plugins import EvaluationPlugin
from torch import nn
from torch.utils.data import TensorDataset

from avalanche_mixplugins.benchmarks import load_digits_tensors
from ssl_ext import SemiSupervisedStrategy, SSLViews


def ssl_digits(
    *,
    per_class: int,
    n_test: int,
    n_experiences: int = 1,
    n_unlabeled: int | None = None,
):
    """Digits padded to 16x16: ``per_class`` labeled images per class in a
    class-incremental benchmark of ``n_experiences``, the first ``n_test``
    test images, and the train images (the first ``n_unlabeled``, default
    all) as the unlabeled dataset. Returns ``(benchmark, unlabeled)``."""
    x_tr, y_tr, x_te, y_te = load_digits_tensors()
    x_tr, x_te = F.pad(x_tr, (4, 4, 4, 4)), F.pad(x_te, (4, 4, 4, 4))
    lab = torch.cat([torch.nonzero(y_tr == c)[:per_class, 0] for c in range(10)])
    train = TensorDataset(x_tr[lab], y_tr[lab])
    train.targets = y_tr[lab].tolist()
    test = TensorDataset(x_te[:n_test], y_te[:n_test])
    test.targets = y_te[:n_test].tolist()
    bench = nc_benchmark(
        train,
        test,
        n_experiences,
        task_labels=False,
        seed=0,
        class_ids_from_zero_in_each_exp=False,
    )
    return bench, TensorDataset(x_tr[:n_unlabeled])


def small_cnn(*, batch_norm: bool = True) -> nn.Module:
    """Two convolutions (8 and 16 channels), global pooling, 10 outputs."""
    norm = [nn.BatchNorm2d(8)] if batch_norm else []
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        *norm,
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


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
