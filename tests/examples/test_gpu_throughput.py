"""The GPU throughput benchmark runs end to end on the CPU at tiny sizes.

The CUDA-only parts (AMP with fp16 and a GradScaler, channels_last, the
synchronisation check) cannot run here; the check's harness is exercised
with ``torch.cuda.set_sync_debug_mode`` replaced by a recorder.
"""

from __future__ import annotations

import json

import pytest
import torch
from avalanche.core import SupervisedPlugin

from tests.support.host_sync import ROOT, HostSyncAudit

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
    assert bench._classify("/x/mine.py", 3)["why"] == "UNDOCUMENTED"


def test_documented_syncs_are_single_lines_and_another_line_is_reported(bench):
    """The allowed syncs are ``file:line`` sites, each a read of a device value
    at that line; a sync in a listed file at any other line is UNDOCUMENTED."""
    for site, why in bench.DOCUMENTED_SYNCS.items():
        path, line = site.rsplit(":", 1)
        found = bench._classify(f"/x/site-packages/{path}", int(line))
        assert found == {"site": site, "why": why}
        text = (ROOT / path).read_text() if not path.startswith("torch/") else None
        if text is not None:
            source = text.splitlines()[int(line) - 1]
            assert any(r in source for r in ("int(", "bool(", ".item()")), site
        for other in (int(line) - 1, int(line) + 1, int(line) + 40):
            if f"{path}:{other}" not in bench.DOCUMENTED_SYNCS:
                moved = bench._classify(f"/x/site-packages/{path}", other)
                assert moved["why"] == "UNDOCUMENTED", moved


class _Window(SupervisedPlugin):
    """Counts the audit's events inside every training iteration (first in
    the plugin list: on; last: off)."""

    def __init__(self, audit: HostSyncAudit, on: bool):
        super().__init__()
        self.audit, self.on = audit, on
        self.first_of_experience: list[bool] = []
        """Per event: whether it was in the first iteration of an experience."""

    def before_training_iteration(self, strategy, **kwargs):
        if self.on:
            for p in strategy.plugins:
                if hasattr(p, "_generator_for"):
                    self.audit.register(p._generator_for(strategy.device))
            self.audit.counting = True

    def after_training_iteration(self, strategy, **kwargs):
        if not self.on:
            self.audit.counting = False
            first = strategy.clock.train_exp_iterations == 0
            new = len(self.audit.events) - len(self.first_of_experience)
            self.first_of_experience += [first] * new


@pytest.mark.parametrize(
    ("part", "variant"),
    [("ssl", "fixmatch"), ("ssl", "calibratemix-fast"), ("er", "er+gradmix")],
)
def test_every_read_of_a_training_iteration_is_a_documented_site(bench, part, variant):
    """On the CPU emulation (tests/support/host_sync.py), from the first
    iteration of a run on: every read of a device value the package's code
    makes inside a training iteration is at a documented site; anything else
    that waits for the host (the first move of host-built state to the
    device) happens only in the first iteration of an experience."""
    args = bench.parser().parse_args(TINY)
    x, y, _ = bench.load_images(args)
    runner = bench.WORKLOADS[part][0]
    audit = HostSyncAudit()
    off = _Window(audit, False)
    with audit:
        runner(
            args,
            variant,
            "fp32",
            torch.device("cpu"),
            x,
            y,
            around=(_Window(audit, True), off),
        )
    reads = [e for e in audit.events if e.kind == "read"]
    assert reads, "the first iteration checks the labels"
    left = [e for e in reads if e.site not in bench.DOCUMENTED_SYNCS]
    assert left == [], "\n".join(str(e) for e in left)
    later = [
        e
        for e, first in zip(audit.events, off.first_of_experience)
        if not first and e.kind != "read"
    ]
    assert later == [], "\n".join(str(e) for e in later)
