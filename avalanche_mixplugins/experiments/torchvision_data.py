"""CIFAR-10, CIFAR-100 and SVHN from torchvision's dataset files, as tensors.

:func:`load_torchvision_tensors` reads the files that torchvision's
``CIFAR10``, ``CIFAR100`` and ``SVHN`` datasets keep in a root directory
(downloading them there when they are missing and a network is available)
and returns ``(x_train, y_train, x_test, y_test)``: ``uint8`` images of
shape ``(N, 3, 32, 32)`` and ``int64`` labels. :data:`CHANNEL_STATS` holds
the per-channel mean and standard deviation of each training split (the
values of the USB benchmark), for normalising the images after
augmentation. Nothing here imports Avalanche.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from avalanche_mixplugins.experiments.data_dirs import removed_if_failed
from avalanche_mixplugins.validation import check_one_of

TORCHVISION_DATASETS = ("cifar10", "cifar100", "svhn")
"""Names accepted by :func:`load_torchvision_tensors`."""

CHANNEL_STATS = {
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2471, 0.2435, 0.2616]),
    "cifar100": ([0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]),
    "svhn": ([0.4380, 0.4440, 0.4730], [0.1980, 0.2010, 0.1970]),
}
"""Per-channel ``(mean, std)`` of the training splits, in ``[0, 1]`` pixel units."""

_LAYOUT = "e.g. DIR/cifar-10-batches-py, DIR/cifar-100-python, DIR/train_32x32.mat"


def _read(name: str, root: str, *, download: bool) -> list[tuple[Tensor, Tensor]]:
    """``[(x_train, y_train), (x_test, y_test)]`` through torchvision's datasets."""
    from torchvision import datasets

    if name == "svhn":
        splits = [
            datasets.SVHN(root, split=s, download=download) for s in ("train", "test")
        ]
        return [(torch.from_numpy(d.data), torch.as_tensor(d.labels)) for d in splits]
    ctor = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    splits = [ctor(root, train=train, download=download) for train in (True, False)]
    return [
        (
            torch.from_numpy(d.data).permute(0, 3, 1, 2).contiguous(),
            torch.as_tensor(d.targets),
        )
        for d in splits
    ]


def load_torchvision_tensors(
    name: str,
    dataset_root: str | Path | None,
    *,
    root_option: str = "dataset_root=<dir>",
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Load CIFAR-10, CIFAR-100 or SVHN with its official train/test split.

    The files are read from ``dataset_root`` in torchvision's layout; when
    they are not there, torchvision downloads them into it.

    :param name: one of :data:`TORCHVISION_DATASETS`.
    :param dataset_root: directory in torchvision's layout (required).
    :param root_option: how the caller's user sets ``dataset_root``, as the
        error message should name it (e.g. ``"--dataset-root DIR"``).
    :return: ``(x_train, y_train, x_test, y_test)``: uint8 images
        ``(N, 3, 32, 32)`` and int64 labels.
    :raises ValueError: if ``name`` is unknown or ``dataset_root`` is ``None``.
    :raises FileNotFoundError: if the files are neither found nor downloaded.
    """
    check_one_of("name", name, TORCHVISION_DATASETS)
    if dataset_root is None:
        raise ValueError(
            f"{name} needs {root_option} with torchvision's layout ({_LAYOUT})"
        )
    root = str(Path(dataset_root).expanduser())
    try:
        (x_tr, y_tr), (x_te, y_te) = _read(name, root, download=False)
    except RuntimeError:
        try:
            with removed_if_failed(Path(root)):  # no empty folder left behind
                (x_tr, y_tr), (x_te, y_te) = _read(name, root, download=True)
        except Exception as exc:  # offline: URL errors of many types
            raise FileNotFoundError(
                f"{name} was not found in {dataset_root} (torchvision's layout) and "
                f"could not be downloaded: {exc!r}. Put the files there or run "
                "once online."
            ) from exc
    return x_tr, y_tr.long(), x_te, y_te.long()


__all__ = ["CHANNEL_STATS", "TORCHVISION_DATASETS", "load_torchvision_tensors"]
