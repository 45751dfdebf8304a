"""Loading the example and benchmark scripts as modules."""

from __future__ import annotations

import pytest

from tests.support import load_script


@pytest.fixture(scope="session")
def script():
    """``script("examples/compare.py")``: a script of the checkout as a module."""
    return load_script
