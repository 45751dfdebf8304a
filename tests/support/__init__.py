"""Plain helpers shared by the tests and by the torchrun workers.

The workers run outside pytest, so what they share with the tests lives here
as ordinary modules; fixtures built on them are in the ``conftest.py`` files.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The checkout under test (the folder holding both packages)."""


def load_script(path: str):
    """The script at ``path`` (relative to :data:`ROOT`) as a fresh module."""
    file = ROOT / path
    spec = importlib.util.spec_from_file_location(f"_script_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
