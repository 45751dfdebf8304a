"""The real datasets of the experiment-support tests."""

from __future__ import annotations

import pytest

from avalanche_mixplugins.experiments import data_dirs, datasets


@pytest.fixture(scope="session")
def fashion_installed():
    """Skips the test when Fashion-MNIST is not installed on the system."""
    found = any(
        data_dirs.find_fashion_files(d) is not None
        for d in data_dirs.system_fashion_dirs()
    )
    if not found:
        pytest.skip(
            "Fashion-MNIST not found: the Debian package dataset-fashion-mnist is "
            "not installed (apt-get install dataset-fashion-mnist) and these tests "
            "use no dataset_root"
        )


@pytest.fixture(scope="module")
def mnist5k():
    return datasets.load_mnist5k_tensors()


@pytest.fixture(scope="module")
def fashion(fashion_installed):
    return datasets.load_fashion_mnist_tensors()
