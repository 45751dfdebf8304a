"""Experiment support: what the examples, benchmarks and tests need around training.

Nothing here is needed to train with the plugins: the offline datasets and
where their files are (:mod:`.datasets`, :mod:`.data_dirs`, :mod:`.idx`),
torchvision's CIFAR and SVHN files as tensors (:mod:`.torchvision_data`),
class-incremental streams built with Avalanche's generators
(:mod:`.streams`), timing (:mod:`.timing`), the evaluated model's
predictions (:mod:`.predictions`), accelerator pieces
(:mod:`.gpu`), figures (:mod:`.plots`) and the pieces the scripts share
(:mod:`.runs`).

The data, stream and timing names below load their module on first use
(Avalanche only when needed); figures come from the subpackage::

    from avalanche_mixplugins.experiments import split_digits
    from avalanche_mixplugins.experiments.plots import pair_score_heatmap
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "datasets": (
        "FASHION_MNIST_CLASSES",
        "NUM_CLASSES",
        "load_digits_tensors",
        "load_fashion_mnist_tensors",
        "load_mnist5k_tensors",
    ),
    "streams": (
        "BENCHMARKS",
        "class_incremental_from_tensors",
        "make_benchmark",
        "split_digits",
        "split_fashion_mnist",
        "split_mnist5k",
    ),
    "timing": ("IterationTimer", "Throughput", "interleaved"),
    "torchvision_data": (
        "CHANNEL_STATS",
        "TORCHVISION_DATASETS",
        "load_torchvision_tensors",
    ),
    "predictions": ("TopLabelPredictions",),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULE_OF})


__all__ = sorted(_MODULE_OF)
