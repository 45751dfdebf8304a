"""Shared fixtures: real data (scikit-learn digits), small real models."""

from __future__ import annotations

import warnings

import pytest
import torch

warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(scope="session")
def digits_benchmark():
    from avalanche_mixplugins.benchmarks import split_digits

    return split_digits(n_experiences=5, seed=0)


@pytest.fixture(scope="session")
def digits_tensors():
    from avalanche_mixplugins.benchmarks import load_digits_tensors

    return load_digits_tensors(seed=0)


@pytest.fixture(scope="session", autouse=True)
def _one_intra_op_thread():
    """Tiny models run fastest on one thread; more threads thrash on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _quiet_and_seeded():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield
