"""The class-incremental streams of ``avalanche_mixplugins.experiments``:
structure, seeds, arguments, the equality with Avalanche's ``nc_benchmark``,
replay strategies training on them."""

from __future__ import annotations

import warnings

import pytest
import torch
from avalanche.evaluation.metrics import accuracy_metrics
from torch import nn

from avalanche_mixplugins import experiments
from avalanche_mixplugins.experiments import datasets, streams
from tests.support.cl import REPLAY_SETUPS, cl_strategy, quiet_evaluator, replay_storage

N_CLASSES = 10


def _exp_targets(exp):
    return [int(t) for t in exp.dataset.targets]


def _stack_images(dataset):
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


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


def test_split_digits_structure(digits_benchmark):
    _check_benchmark(
        digits_benchmark, n_experiences=5, n_train=1347, n_test=450, shape=(1, 8, 8)
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


def test_split_fashion_mnist_structure(fashion_installed):
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


@pytest.mark.parametrize("kind", REPLAY_SETUPS)
def test_replay_strategies_train_on_split_digits(digits_benchmark, kind):
    torch.manual_seed(0)
    body = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU())
    model = nn.Sequential(body, nn.Linear(64, N_CLASSES))
    before = [p.detach().clone() for p in model.parameters()]
    # ER_AML cycles over a loader of train_mb_size batches of each class of its
    # buffer (drop_last=True): with fewer stored samples per class than
    # train_mb_size, that loader is empty and Avalanche loops forever. 200
    # samples over 4 classes leave 50 per class, more than train_mb_size=32.
    mem_size = 200 if kind == "er_aml" else 50
    strategy = cl_strategy(
        kind,
        model,
        mem_size=mem_size,
        batch_size_mem=10,
        feature_extractor=body,
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
        train_epochs=1,
        eval_mb_size=256,
        evaluator=quiet_evaluator(accuracy_metrics(stream=True)),
    )

    seen = set()
    # Avalanche's @deprecated wrapper calls warnings.simplefilter("once") itself,
    # which defeats pytest's filterwarnings marks: record the warnings instead
    # and drop the known DeprecationWarning about storage_policy.update.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for exp in digits_benchmark.train_stream[:2]:
            strategy.train(exp)
            seen |= set(exp.classes_in_this_experience)
        results = strategy.eval(digits_benchmark.test_stream[:2])
    for w in caught:
        if not (
            issubclass(w.category, DeprecationWarning)
            and "deprecated function update" in str(w.message)
        ):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    buffer = replay_storage(strategy).buffer
    assert 0 < len(buffer) <= mem_size
    buffer_classes = {int(t) for t in buffer.targets}
    assert buffer_classes <= seen
    # Replay memories hold samples of the first experience too.
    first = set(digits_benchmark.train_stream[0].classes_in_this_experience)
    assert buffer_classes & first
    accuracy = [v for k, v in results.items() if k.startswith("Top1_Acc_Stream/eval")]
    assert accuracy and accuracy[0] > 0.3  # chance over 4 seen classes is 0.25


def test_split_fashion_mnist_per_class(fashion_installed):
    bench = streams.split_fashion_mnist(per_class=30, seed=2)
    train = [exp.dataset for exp in bench.train_stream]
    labels = torch.tensor([int(y) for d in train for y in d.targets])
    assert torch.bincount(labels, minlength=10).tolist() == [30] * 10
    assert sum(len(exp.dataset) for exp in bench.test_stream) == 10000
    again = streams.split_fashion_mnist(per_class=30, seed=2)
    other = streams.split_fashion_mnist(per_class=30, seed=3)
    first = torch.stack([train[0][i][0] for i in range(5)])
    assert torch.equal(
        first, torch.stack([again.train_stream[0].dataset[i][0] for i in range(5)])
    )
    x_other = torch.stack([other.train_stream[0].dataset[i][0] for i in range(5)])
    assert not torch.equal(first, x_other)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="per_class must be a positive int"):
            streams.split_fashion_mnist(per_class=bad)
    with pytest.raises(ValueError, match="has only 6000 training images"):
        streams.split_fashion_mnist(per_class=6001)
