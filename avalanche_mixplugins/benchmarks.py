"""Deprecated: the offline streams and datasets moved to :mod:`avalanche_mixplugins.experiments`.

``split_digits``, ``split_mnist5k``, ``split_fashion_mnist``,
``make_benchmark`` and ``BENCHMARKS`` are in
:mod:`avalanche_mixplugins.experiments.streams`; the ``load_*_tensors``
loaders, ``NUM_CLASSES`` and ``FASHION_MNIST_CLASSES`` in
:mod:`avalanche_mixplugins.experiments.datasets`. The old names still work
for one release and warn (``DeprecationWarning``) with the new path.
"""

from avalanche_mixplugins.deprecation import moved_names

_STREAMS = "avalanche_mixplugins.experiments.streams"
_DATASETS = "avalanche_mixplugins.experiments.datasets"
_MOVED = {
    "BENCHMARKS": _STREAMS,
    "FASHION_MNIST_CLASSES": _DATASETS,
    "NUM_CLASSES": _DATASETS,
    "load_digits_tensors": _DATASETS,
    "load_fashion_mnist_tensors": _DATASETS,
    "load_mnist5k_tensors": _DATASETS,
    "make_benchmark": _STREAMS,
    "split_digits": _STREAMS,
    "split_fashion_mnist": _STREAMS,
    "split_mnist5k": _STREAMS,
}

__getattr__ = moved_names(__name__, _MOVED)
__all__ = sorted(_MOVED)
