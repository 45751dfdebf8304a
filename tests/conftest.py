"""Fixtures of every area: real data (scikit-learn digits), one thread, a seed.

Plain helpers that the torchrun workers share with the tests (models,
strategies, the SSL data) live in :mod:`tests.support`; the fixtures of one
area live in that area's ``conftest.py`` (``distributed/``: the torchrun
launch, ``examples/``: loading a script).
"""

from __future__ import annotations

import pytest
import torch

from avalanche_mixplugins.experiments.runs import (
    KNOWN_HARMLESS_WARNINGS,
    known_warnings_silenced,
)

with known_warnings_silenced():  # qpsolvers warns once, when Avalanche imports it
    import avalanche.training  # noqa: F401


def pytest_configure(config):
    """The third-party warnings the examples hide (message, category and
    module each, see :data:`~avalanche_mixplugins.experiments.runs.KNOWN_HARMLESS_WARNINGS`)
    are pytest ``filterwarnings`` too; this package's own warnings stay visible."""
    for spec in KNOWN_HARMLESS_WARNINGS:
        category = spec["category"].__name__  # builtins
        line = f"ignore:{spec['message']}:{category}:{spec['module']}"
        config.addinivalue_line("filterwarnings", line)


@pytest.fixture(scope="session")
def digits_benchmark():
    """Split digits, 5 experiences of 2 classes, seed 0."""
    from avalanche_mixplugins.experiments.streams import split_digits

    return split_digits(n_experiences=5, seed=0)


@pytest.fixture(scope="session")
def digits_tensors():
    """``(x_train, y_train, x_test, y_test)`` of scikit-learn digits, seed 0."""
    from avalanche_mixplugins.experiments.datasets import load_digits_tensors

    return load_digits_tensors(seed=0)


@pytest.fixture(scope="session", autouse=True)
def _restore_thread_count():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _one_thread_quiet_and_seeded():
    """Each test starts on one intra-op thread (tiny models run fastest on one;
    more thrash on a busy machine, and a script under test may change it),
    seeded, with the known third-party warnings hidden (Avalanche's
    ``@deprecated`` wrapper resets the filters on every call, so pytest's own
    ``filterwarnings`` cannot hide its storage-policy warning)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    with known_warnings_silenced():
        yield
