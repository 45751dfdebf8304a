"""The timing plugins of ``avalanche_mixplugins.experiments.timing``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from avalanche_mixplugins import MixupPlugin
from avalanche_mixplugins.experiments.timing import IterationTimer
from tests.support.cl import cl_strategy
from tests.support.nets import make_mlp


def test_iteration_timer_limits_and_pauses(digits_benchmark):
    timer = IterationTimer(record=False, limit=3)
    strategy = cl_strategy("naive", make_mlp(), [MixupPlugin(seed=0), timer])
    strategy.train(digits_benchmark.train_stream[0])  # paused: full experience
    assert timer.times == [] and strategy.clock.train_exp_iterations > 3
    timer.record = True
    strategy.train(digits_benchmark.train_stream[1])
    assert len(timer.times) == 3 and strategy.clock.train_exp_iterations == 3
    assert all(t > 0 for t in timer.times)
    with pytest.raises(ValueError, match="limit"):
        IterationTimer(limit=0)


def test_iteration_timer_synchronises_cuda_only(monkeypatch):
    with pytest.raises(ValueError, match="synchronize"):
        IterationTimer(synchronize="yes")
    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", synced.append)
    for device, flag, expected in [
        ("cpu", None, 0),
        ("cpu", True, 0),
        ("cuda", None, 2),
        ("cuda", False, 0),
    ]:
        synced.clear()
        timer = IterationTimer(synchronize=flag)
        strategy = SimpleNamespace(device=torch.device(device))
        timer.before_training_iteration(strategy)
        timer.after_training_iteration(strategy)
        assert len(synced) == expected and len(timer.times) == 1
