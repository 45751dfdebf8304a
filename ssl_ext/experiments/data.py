"""Data of semi-supervised runs: datasets by name, views, the labeled split.

:func:`load_ssl_dataset` loads a dataset of :data:`SSL_DATASETS` as
tensors, :func:`views_for_dataset` gives its weak and strong views, and
:func:`split_training_set` draws the labeled, unlabeled and validation
images of its training split (:func:`balanced_labels`: the same number of
labels per class); :func:`add_split_options` and :func:`split_from_args`
do the same from a command line.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from avalanche_mixplugins.experiments.datasets import (
    load_digits_tensors,
    load_fashion_mnist_tensors,
    load_mnist5k_tensors,
)
from avalanche_mixplugins.experiments.torchvision_data import (
    CHANNEL_STATS,
    TORCHVISION_DATASETS,
    load_torchvision_tensors,
)
from ssl_ext.views import SSLViews

OFFLINE_DATASETS = ("mnist5k", "fashion_mnist", "digits")
"""Datasets read from files installed on the machine (no download)."""
SSL_DATASETS = OFFLINE_DATASETS + TORCHVISION_DATASETS
"""Names accepted by :func:`load_ssl_dataset`."""
FLIPPED_DATASETS = ("fashion_mnist", "cifar10", "cifar100")
"""Datasets whose classes survive a horizontal flip (digits do not)."""
VALIDATION_SEED = 2**31 - 1
"""Seed of the validation carve: the same images for every run seed."""


def load_ssl_dataset(
    name: str,
    dataset_root: str | Path | None = None,
    *,
    root_option: str = "dataset_root=<dir>",
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_train, y_train, x_test, y_test)`` of a dataset of :data:`SSL_DATASETS`.

    Images are ``(N, C, H, W)``, float in ``[0, 1]`` for the offline
    datasets and uint8 for torchvision's; scikit-learn's 8x8 digits get a
    zero border of 4 pixels (16x16), so crops and the CNN's pooling have
    room.

    :param dataset_root: directory in torchvision's layout (required for
        the torchvision datasets, optional for Fashion-MNIST).
    :param root_option: how the error messages name ``dataset_root``.
    """
    if name == "mnist5k":
        return load_mnist5k_tensors()
    if name == "fashion_mnist":
        return load_fashion_mnist_tensors(
            dataset_root=dataset_root, root_option=root_option
        )
    if name == "digits":
        x_tr, y_tr, x_te, y_te = load_digits_tensors()
        return F.pad(x_tr, (4,) * 4), y_tr, F.pad(x_te, (4,) * 4), y_te
    return load_torchvision_tensors(name, dataset_root, root_option=root_option)


def views_for_dataset(name: str) -> SSLViews:
    """Weak and strong views for a dataset: flips where they keep the class,
    the training split's channel statistics for torchvision's datasets."""
    mean, std = CHANNEL_STATS.get(name, (None, None))
    return SSLViews(flip=name in FLIPPED_DATASETS, mean=mean, std=std)


def balanced_labels(
    y: Tensor, per_class: int, seed: int, exclude: Tensor | None = None
) -> Tensor:
    """Indices of ``per_class`` random samples of every class, never in ``exclude``.

    :raises ValueError: if a class has fewer than ``per_class`` samples.
    """
    g = torch.Generator().manual_seed(seed)
    chosen = []
    allowed = torch.ones(y.shape[0], dtype=torch.bool)
    if exclude is not None:
        allowed[exclude] = False
    for c in range(int(y.max()) + 1):
        idx = torch.nonzero((y == c) & allowed)[:, 0]
        if idx.numel() < per_class:
            raise ValueError(f"class {c} has {idx.numel()} samples, < {per_class}")
        chosen.append(idx[torch.randperm(idx.numel(), generator=g)[:per_class]])
    return torch.cat(chosen)


class TrainingSplit(NamedTuple):
    """Index tensors into a training set: see :func:`split_training_set`."""

    labeled: Tensor
    unlabeled: Tensor
    validation: Tensor


def split_training_set(
    y: Tensor,
    *,
    per_class: int,
    seed: int,
    val_size: int = 0,
    unlabeled: int | None = None,
) -> TrainingSplit:
    """Labeled, unlabeled and validation images of one training split.

    The ``val_size`` validation images are a fixed carve (seeded by
    :data:`VALIDATION_SEED`, the same for every ``seed``), never labeled
    and never unlabeled. ``per_class`` labeled images of every class are
    drawn among the others (seeded by ``seed``). The unlabeled pool is every
    image outside the validation split, or, with ``unlabeled``, a random
    subset of that many of them (seeded by ``seed + 1``) plus the labeled
    images, as in USB; its indices are sorted.

    :raises ValueError: if a class is too small or ``unlabeled`` exceeds the
        images outside the validation split.
    """
    n_train = y.shape[0]
    carve = torch.randperm(
        n_train, generator=torch.Generator().manual_seed(VALIDATION_SEED)
    )
    val = carve[:val_size] if val_size else torch.zeros(0, dtype=torch.long)
    lab = balanced_labels(y, per_class, seed, exclude=val)
    pool = torch.ones(n_train, dtype=torch.bool)
    pool[val] = False
    pool_idx = torch.nonzero(pool)[:, 0]
    if unlabeled:
        if unlabeled > pool_idx.numel():
            raise ValueError(
                f"unlabeled={unlabeled} > the {pool_idx.numel()} training images "
                "outside the validation split"
            )
        g = torch.Generator().manual_seed(seed + 1)
        pool_idx = pool_idx[torch.randperm(pool_idx.numel(), generator=g)][:unlabeled]
        # the labeled images are part of the unlabeled pool, as in USB
        pool_idx = torch.unique(torch.cat([pool_idx, lab]))
    return TrainingSplit(lab, pool_idx, val)


def add_split_options(p: argparse.ArgumentParser) -> None:
    """``--labels``, ``--labels-per-class``, ``--unlabeled``, ``--val-size`` and
    ``--eval-on``: the options of :func:`split_from_args`."""
    p.add_argument(
        "--labels",
        type=int,
        default=40,
        help="total labeled samples, the same number per class; must be a "
        "multiple of the number of classes (default: %(default)s)",
    )
    p.add_argument(
        "--labels-per-class",
        type=int,
        default=None,
        help="labeled samples per class (overrides --labels)",
    )
    p.add_argument(
        "--unlabeled",
        type=int,
        default=None,
        help="size of the unlabeled pool: a random subset of the training split "
        "(plus the labeled images); default: the whole split",
    )
    p.add_argument(
        "--val-size",
        type=int,
        default=0,
        help="training images carved out as a validation split (never labeled, "
        "never unlabeled; the same images for every seed) (default: %(default)s)",
    )
    p.add_argument(
        "--eval-on",
        default="test",
        choices=("test", "val"),
        help="evaluate on the test split or the validation split (default: "
        "%(default)s)",
    )


def split_from_args(
    args: argparse.Namespace, y: Tensor, seed: int
) -> tuple[TrainingSplit, int]:
    """The split the options of :func:`add_split_options` ask for, and the
    number of labels per class.

    :raises ValueError: naming the option at fault (``--labels`` not a
        multiple of the classes, ``--eval-on val`` without ``--val-size``,
        a class too small or ``--unlabeled`` too large).
    """
    n_classes = int(y.max()) + 1
    per_class = args.labels_per_class
    if per_class is None:
        if args.labels % n_classes:
            raise ValueError(
                f"--labels {args.labels} is not a multiple of the {n_classes} classes"
            )
        per_class = args.labels // n_classes
    if args.eval_on == "val" and not args.val_size:
        raise ValueError("--eval-on val needs --val-size > 0")
    split = split_training_set(
        y,
        per_class=per_class,
        seed=seed,
        val_size=args.val_size,
        unlabeled=args.unlabeled,
    )
    return split, per_class


__all__ = [
    "FLIPPED_DATASETS",
    "OFFLINE_DATASETS",
    "SSL_DATASETS",
    "VALIDATION_SEED",
    "TrainingSplit",
    "add_split_options",
    "balanced_labels",
    "load_ssl_dataset",
    "split_from_args",
    "split_training_set",
    "views_for_dataset",
]
