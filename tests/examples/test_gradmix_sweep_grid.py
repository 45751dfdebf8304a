"""``gradmix_sweep.py --grid`` runs every combination of the values it is given.

The expected combinations are written out by hand, so a grid that pairs a
key with another key's values (or drops a combination) makes the test fail.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest


@pytest.fixture(scope="module")
def sweep(script):
    return script("benchmarks/gradmix_sweep.py")


def _args(grid: str) -> SimpleNamespace:
    return SimpleNamespace(
        grid=grid,
        grid_augs=["mixup", "gradmix_cutmix"],
        plugin='{"prob": 0.5}',
        datasets=["digits"],
        strategies=["er"],
        augs=["none", "mixup", "gradmix_cutmix"],
        mem_sizes=[200],
        epochs=[1],
        lrs=[0.03],
        seeds=[0],
        per_class=None,
        split="val",
    )


def test_every_combination_of_two_keys_given_in_any_order(sweep):
    cfgs = sweep.configs(_args('{"weight": [0.5, 1.0], "alpha": [0.2, 1.0]}'))
    mixup = [c["plugin_kwargs"] for c in cfgs if c["aug"] == "mixup"]
    assert sorted((k["weight"], k["alpha"]) for k in mixup) == [
        (0.5, 0.2),
        (0.5, 1.0),
        (1.0, 0.2),
        (1.0, 1.0),
    ]
    assert all(k["prob"] == 0.5 for k in mixup)
    # augmentations outside --grid-augs run once, with --plugin only
    assert [c["plugin_kwargs"] for c in cfgs if c["aug"] == "none"] == [{"prob": 0.5}]


def test_fixed_operation_arms_keep_their_operation(sweep):
    cfgs = sweep.configs(_args('{"mix": ["mixup", "cutmix"], "weight": [0.5]}'))
    fixed = [c["plugin_kwargs"] for c in cfgs if c["aug"] == "gradmix_cutmix"]
    assert all("mix" not in k and k["weight"] == 0.5 for k in fixed)
