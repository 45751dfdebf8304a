"""GradMix under torchrun with two CPU processes (gloo): identical pair scores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.distributed
def test_two_ranks_hold_identical_pair_scores(tmp_path):
    out = tmp_path / "scores.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(HERE))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(HERE / "distributed_gradmix.py"),
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    rank0, rank1 = res["scores"]
    assert rank0 == rank1
    seen = sum(v for row in res["seen"] for v in row)
    assert seen >= 6  # pairs of the three experiences' classes were scored
    assert any(v != 0.0 for row in rank0 for v in row)
    assert res["params_equal"]  # DDP kept the replicas in sync with the mixed loss
