"""GradMix under torchrun with two CPU processes (gloo), checked against one process.

Agreement between the ranks is not enough (each rank scoring its own half of
the data would agree with the other after a broadcast, and a missing
all-reduce can leave them agreeing on wrong numbers). So every step of the
distributed run is done again by a single-process GradMix fed the union of
the two ranks' batches (the same samples, partners, mixing weights and mixed
inputs, at the same weights and plugin state): its inner products, pair-score
matrix, scored pairs and helpful mask must equal those of the ranks. This goes
through the plugin's public API (``mixed_batch``, ``pair_scores``,
``scored_pairs``, ``last_inner``, ``policy.helpful``), for both gradient
spaces.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from avalanche.core import SupervisedPlugin
from avalanche.models.utils import avalanche_forward

from avalanche_mixplugins import GradMixPlugin
from avalanche_mixplugins.experiments.streams import split_digits
from avalanche_mixplugins.plugins.base import MixingStepBatch
from tests.distributed.gradmix_worker import GRADMIX_KWARGS
from tests.support.cl import cl_strategy
from tests.support.nets import make_mlp


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, torchrun):
    """Run the worker once under torchrun; return its output directory."""
    out = tmp_path_factory.mktemp("ddp")
    torchrun("gradmix_worker.py", str(out))
    return out


class ForcedGradMix(GradMixPlugin):
    """GradMix whose mixed batch is given (the union of the ranks' batches):
    the pool must be the strategy's minibatch; partners, weights and mixed
    inputs are those the ranks drew."""

    def __init__(self, step: dict, **kwargs):
        super().__init__(**kwargs)
        self.step = step

    def before_training_exp(self, strategy, **kwargs):
        # the replayed step is in the middle of its experience: keep which
        # pairs already had evidence there (the loaded state)
        fresh = self.policy.fresh.clone()
        super().before_training_exp(strategy, **kwargs)
        self.policy.fresh = fresh

    def mixed_batch(self, strategy):
        x, y, t, is_buffer = self.training_samples(strategy)
        s = self.step
        assert torch.equal(x, s["x"]) and torch.equal(y, s["y"])
        assert torch.equal(is_buffer, s["is_buffer"])
        logits = avalanche_forward(strategy.model, s["x_mix"], t)
        return MixingStepBatch(
            x=x,
            y=y,
            t=t,
            is_buffer=is_buffer,
            partner=s["partner"],
            active=s["active"],
            lam=s["lam"],
            x_mix=s["x_mix"],
            logits=logits,
        )


class OneBatch(SupervisedPlugin):
    """Makes the experience one step on a given minibatch."""

    def __init__(self, batch: list):
        super().__init__()
        self.batch = batch

    def before_training_exp(self, strategy, **kwargs):
        strategy.dataloader = [list(self.batch)]


def union(a: dict, b: dict) -> dict:
    """The two ranks' step as one batch: rank 0's rows, then rank 1's."""
    n0 = a["x"].shape[0]
    cat = {k: torch.cat([a[k], b[k]]) for k in ("x", "y", "t", "is_buffer")}
    cat.update({k: torch.cat([a[k], b[k]]) for k in ("active", "lam", "x_mix")})
    cat["partner"] = torch.cat([a["partner"], b["partner"] + n0])
    return cat


def single_process_step(space: str, a: dict, b: dict, exp) -> GradMixPlugin:
    """One GradMix step in one process on the union of the ranks' batches."""
    step = union(a, b)
    model = make_mlp()
    model.load_state_dict(a["params"])
    plugin = ForcedGradMix(step, seed=0, grad_space=space, **GRADMIX_KWARGS)
    plugin.load_state_dict(a["plugin"])
    strategy = cl_strategy(
        "naive",
        model,
        [OneBatch([step["x"], step["y"], step["t"]]), plugin],
        lr=0.0,
        train_mb_size=step["x"].shape[0],
    )
    strategy.train(exp)
    assert strategy.clock.train_exp_iterations == 1
    plugin.union_step = step
    return plugin


def worker_error(out: Path, space: str) -> str | None:
    return json.loads((out / "summary.json").read_text())[space].get("error")


@pytest.mark.distributed
@pytest.mark.parametrize("space", ["last", "full"])
def test_two_ranks_equal_one_process_on_the_union_of_their_batches(two_ranks, space):
    error = worker_error(two_ranks, space)
    assert error is None, error
    ranks = [torch.load(two_ranks / f"rank{r}_{space}.pt") for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) >= 6  # steps of experiences 2 and 3
    bench = split_digits(n_experiences=5, seed=0)
    new_pairs = 0
    for a, b in zip(*ranks):
        assert a["experience"] == b["experience"]
        # the ranks start the step from the same weights and scores
        for k in a["params"]:
            assert torch.equal(a["params"][k], b["params"][k])
        torch.testing.assert_close(
            a["plugin"]["policy"]["scores"], b["plugin"]["policy"]["scores"]
        )
        assert a["is_buffer"].any() and b["is_buffer"].any()
        one = single_process_step(space, a, b, bench.train_stream[a["experience"]])
        n0 = a["x"].shape[0]
        tol = dict(rtol=1e-4, atol=1e-6)
        # inner products with the buffer gradient of the union (all ranks' buffer
        # samples), row by row
        torch.testing.assert_close(a["last_inner"], one.last_inner[:n0], **tol)
        torch.testing.assert_close(b["last_inner"], one.last_inner[n0:], **tol)
        # pair scores: the evidence of both ranks, folded once
        for r in (a, b):
            torch.testing.assert_close(r["pair_scores"], one.pair_scores, **tol)
            assert torch.equal(r["scored_pairs"], one.scored_pairs)
        # helpful mask, away from scores within rounding of zero
        s = one.union_step
        helpful = one.policy.helpful(s["y"], s["partner"])
        ya, yb = s["y"], s["y"][s["partner"]]
        clear = one.policy.scores[ya, yb].abs() > 1e-5
        got = torch.cat([a["helpful"], b["helpful"]])
        assert torch.equal(got[clear], helpful[clear])
        new_pairs += int(one.scored_pairs.sum() > a["plugin"]["policy"]["seen"].sum())
    assert new_pairs > 0  # pairs got their first evidence in the checked steps


@pytest.mark.distributed
def test_two_ranks_hold_identical_pair_scores_and_weights(two_ranks):
    summary = json.loads((two_ranks / "summary.json").read_text())
    for space in ("last", "full"):
        res = summary[space]
        rank0, rank1 = res["scores"]
        assert rank0 == rank1
        seen = sum(v for row in res["seen"] for v in row)
        assert seen >= 6  # pairs of the three experiences' classes were scored
        assert any(v != 0.0 for row in rank0 for v in row)
        assert res["params_equal"]  # DDP kept the replicas in sync
