"""The GPU throughput benchmark runs end to end on the CPU at tiny sizes.

The CUDA-only parts (AMP with fp16 and a GradScaler, channels_last, the
synchronisation check) cannot run here; the check's harness is exercised
with ``torch.cuda.set_sync_debug_mode`` replaced by a recorder.
"""

from __future__ import annotations

import json

import pytest
import torch

TINY = [
    "--device",
    "cpu",
    "--iterations",
    "2",
    "--warmup",
    "1",
    "--ssl-batch",
    "2",
    "--mu",
    "2",
    "--er-batch",
    "4",
    "--mem-size",
    "20",
    "--image-size",
    "16",
    "--threads",
    "1",
]


@pytest.fixture(scope="module")
def bench(script):
    return script("benchmarks/gpu_throughput.py")


def test_every_workload_reports_iterations_per_second(bench, tmp_path, capsys):
    rows = bench.main([*TINY, "--json", str(tmp_path / "rows.json")])
    assert [(r["part"], r["variant"]) for r in rows] == [
        ("ssl", "fixmatch"),
        ("ssl", "calibratemix-fast"),
        ("er", "er+mixup"),
        ("er", "er+gradmix"),
    ]
    assert all(r["precision"] == "fp32" and r["it_per_s"] > 0 for r in rows)
    assert rows[0]["model"] == "wrn28_2" and rows[2]["model"] == "resnet18"
    assert json.loads((tmp_path / "rows.json").read_text()) == rows
    out = capsys.readouterr().out
    assert "device cpu" in out and "it/s" in out and "threads 1" in out


def test_bf16_autocast_path_and_flag_checks(bench):
    rows = bench.main([*TINY, "--parts", "er", "--precisions", "bf16"])
    assert [r["precision"] for r in rows] == ["bf16", "bf16"]
    with pytest.raises(SystemExit):
        bench.main([*TINY, "--precisions", "fp16"])  # fp16 needs CUDA
    with pytest.raises(SystemExit):
        bench.main([*TINY, "--iterations", "0"])


def test_sync_check_arms_the_debug_mode_for_one_iteration(bench, monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", calls.append)
    args = bench.parser().parse_args(TINY)
    x, y, _ = bench.load_images(args)
    result = bench.sync_sites(
        bench.run_er, args, "er+gradmix", "fp32", torch.device("cpu"), x, y
    )
    # armed once per run (error, then warn), always disarmed afterwards
    assert [c for c in calls if c != 0] == ["error", "warn"]
    assert calls[-1] == 0
    assert result == {"error_mode": "no synchronisation", "all": []}
    site = bench._classify("/x/site-packages/ssl_ext/strategy.py", 10)
    assert site["site"] == "ssl_ext/strategy.py:10" and site["why"] != "UNDOCUMENTED"
    assert bench._classify("/x/mine.py", 3)["why"] == "UNDOCUMENTED"
