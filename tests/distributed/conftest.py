"""The torchrun launch shared by the distributed tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def torchrun():
    """``torchrun(worker, *args, timeout=...)`` runs ``tests/distributed/<worker>``
    on two CPU processes (gloo, one thread each) and fails the test with the
    end of its standard error if it does not exit with 0.

    The checkout under test comes first on the workers' ``PYTHONPATH``, so
    they import its packages (and :mod:`tests.support`), not an installed
    copy.
    """

    def run(worker: str, *args: str, timeout: float = 600) -> None:
        path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(HERE / worker),
            *args,
        ]
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert proc.returncode == 0, proc.stderr[-3000:]

    return run
