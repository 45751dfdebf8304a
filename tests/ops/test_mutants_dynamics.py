"""AUM and APM trackers: the cases the generated mutations of
``ssl_ext/dynamics.py`` showed untested (growth by one id or one class, the
empty table, memory, moves, state dicts and their checks), each against a
hand-worked value."""

from __future__ import annotations

import pytest
import torch

from ssl_ext.dynamics import APMTracker, AUMTracker


def test_aum_grows_by_a_single_id_and_checks_its_argument():
    aum = AUMTracker(num_samples=2)
    aum.update(torch.tensor([[3.0, 1.0]]), torch.tensor([0]), torch.tensor([1]))
    aum.grow(3)
    assert aum.num_samples == 3
    assert aum.margin_sum.tolist() == [0.0, 2.0, 0.0]
    aum.update(torch.tensor([[0.0, 4.0]]), torch.tensor([0]), torch.tensor([2]))
    assert aum.value(torch.tensor([0, 1, 2])).tolist() == [0.0, 2.0, -4.0]
    aum.grow(2)  # never shrinks
    assert aum.num_samples == 3
    for bad in (lambda: AUMTracker(num_samples=0), lambda: aum.grow(0)):
        with pytest.raises(
            ValueError, match="^num_samples must be a positive integer, got 0$"
        ):
            bad()


def test_memory_is_counted_from_the_tables():
    assert AUMTracker(num_samples=5).memory_bytes() == 5 * (4 + 4)
    apm = APMTracker(num_samples=5)
    assert apm.memory_bytes() == 5 * 4  # the int32 counts, no table yet
    apm.update(torch.zeros(2, 3), torch.tensor([0, 1]))
    assert apm.memory_bytes() == 5 * 3 * 4 + 5 * 4
    half = APMTracker(num_samples=5, num_classes=3, dtype=torch.float16)
    assert half.memory_bytes() == 5 * 3 * 2 + 5 * 4


def test_to_moves_and_returns_the_tracker():
    aum = AUMTracker(num_samples=2)
    aum.update(torch.tensor([[3.0, 1.0]]), torch.tensor([0]), torch.tensor([0]))
    assert aum.to("cpu") is aum
    assert aum.value(torch.tensor([0, 1])).tolist() == [2.0, 0.0]
    empty = APMTracker(num_samples=2)
    assert empty.to("cpu") is empty and empty.table is None
    assert empty.device == torch.device("cpu")
    apm = APMTracker(num_samples=2)
    apm.update(torch.tensor([[2.0, 0.5]]), torch.tensor([1]))
    assert apm.to(torch.device("cpu")) is apm
    assert apm.device == torch.device("cpu")
    assert apm.table[1].tolist() == pytest.approx([0.997 * 1.5, -0.997 * 1.5])
    assert apm.updates(torch.tensor([0, 1])).tolist() == [0, 1]


def test_aum_state_dict_checks_and_dtype():
    aum = AUMTracker(num_samples=2)
    with pytest.raises(
        ValueError, match=r"^unexpected keys in AUM state dict: \['extra'\]$"
    ):
        aum.load_state_dict(
            {"margin_sum": torch.zeros(2), "count": torch.zeros(2), "extra": 1}
        )
    with pytest.raises(
        ValueError, match="^margin_sum and count must have the same shape$"
    ):
        aum.load_state_dict({"margin_sum": torch.zeros(2), "count": torch.zeros(3)})
    aum.load_state_dict(
        {
            "margin_sum": torch.tensor([1.0, 6.0], dtype=torch.float64),
            "count": torch.tensor([1, 3]),
        }
    )
    assert aum.margin_sum.dtype == torch.float32 and aum.count.dtype == torch.float32
    assert aum.value(torch.tensor([0, 1])).tolist() == [1.0, 2.0]


def test_apm_arguments_and_messages():
    with pytest.raises(
        ValueError, match="^num_samples must be a positive integer, got 0$"
    ):
        APMTracker(num_samples=0)
    with pytest.raises(
        ValueError, match="^num_classes must be a positive integer, got 0$"
    ):
        APMTracker(num_samples=2, num_classes=0)
    assert APMTracker(num_samples=2, delta=1.0).delta == 1.0  # 1 is allowed
    with pytest.raises(ValueError, match=r"delta must be in \(0, 1\], got 1.5"):
        APMTracker(num_samples=2, delta=1.5)
    with pytest.raises(
        ValueError,
        match="^dtype must be torch.float32, float16 or bfloat16, got torch.float64$",
    ):
        APMTracker(num_samples=2, dtype=torch.float64)
    apm = APMTracker(num_samples=3, num_classes=4)
    assert apm.num_classes == 4 and apm.table.shape == (3, 4)
    assert apm.table.abs().sum() == 0 and apm.device == torch.device("cpu")
    assert apm.updates(torch.arange(3)).dtype == torch.int32
    with pytest.raises(ValueError, match="^got 2 classes, fewer than the 4 tracked$"):
        apm.update(torch.zeros(1, 2), torch.tensor([0]))


def test_before_any_update_values_are_zero_and_best_class_is_zero():
    apm = APMTracker(num_samples=4)
    idx = torch.tensor([3, 0, 1])
    assert apm.value(idx, torch.tensor([0, 1, 2])).tolist() == [0.0, 0.0, 0.0]
    values, classes = apm.best(idx)
    assert values.tolist() == [0.0, 0.0, 0.0]
    assert classes.tolist() == [0, 0, 0] and classes.dtype == torch.int64


def test_a_growing_head_keeps_the_old_columns_and_clamps_unseen_classes():
    d = 0.5
    apm = APMTracker(num_samples=2, delta=d)
    apm.update(torch.tensor([[1.0, 3.0]]), torch.tensor([0]))
    # first update a = d: PM = (1 - 3, 3 - 1) = (-2, 2)
    assert apm.table[0].tolist() == [-1.0, 1.0]
    apm.update(torch.tensor([[0.0, 0.0, 4.0]]), torch.tensor([0]))
    # second update a = d / 2 = 1/4; PM = (-4, -4, 4); the new column starts at 0
    assert apm.table[0].tolist() == [-1.75, -0.25, 1.0]
    idx = torch.tensor([0, 0, 0])
    assert apm.value(idx, torch.tensor([1, 2, 7])).tolist() == [-0.25, 1.0, 1.0]
    values, classes = apm.best(torch.tensor([0]))
    assert values.tolist() == [1.0] and classes.tolist() == [2]


def test_apm_state_dict_round_trip_checks_and_dtypes():
    apm = APMTracker(num_samples=3, dtype=torch.float16)
    with pytest.raises(ValueError, match="^table has 2 rows, expected 3$"):
        apm.load_state_dict(
            {"table": torch.zeros(2, 4), "count": torch.zeros(3, dtype=torch.int32)}
        )
    apm.load_state_dict(
        {
            "table": torch.tensor([[0.5, -0.5], [0.0, 1.0], [2.0, -2.0]]),
            "count": torch.tensor([1, 0, 2]),  # int64
            "delta": 0.25,
        }
    )
    assert apm.delta == 0.25
    assert apm.table.dtype == torch.float16 and apm.count.dtype == torch.int32
    assert apm.table[2].tolist() == [2.0, -2.0]
    assert apm.updates(torch.tensor([0, 1, 2])).tolist() == [1, 0, 2]
    state = apm.state_dict()
    assert sorted(state) == ["count", "delta", "table"] and state["delta"] == 0.25
    copy = APMTracker(num_samples=3, dtype=torch.float16)
    copy.load_state_dict(state)
    assert torch.equal(copy.table, apm.table) and torch.equal(copy.count, apm.count)
    assert copy.delta == 0.25
    apm.load_state_dict({"table": None, "count": torch.zeros(3, dtype=torch.int32)})
    assert apm.table is None and apm.num_classes == 0
