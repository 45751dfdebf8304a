"""Worker launched by test_gradmix.py under torchrun (2 CPU processes, gloo).

Each rank trains Naive + ReplayPlugin + GradMixPlugin (DDP model) on its share
of split digits, with a different plugin seed per rank (so the ranks draw
different pairs), once with ``grad_space="last"`` and once with ``"full"``.
For every step of the second and third experiences, each rank records what a
single process needs to redo the step on the union of the two ranks' batches
(the weights and the plugin state before the step, the pool, partners,
weights and mixed inputs) and what the step produced (pair scores, scored
pairs, inner products, helpful mask). A space whose training raises is
reported in the summary instead of ending the run. Each rank writes
``<out>/rank<r>_<space>.pt``; rank 0 also writes ``<out>/summary.json``.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from avalanche.core import SupervisedPlugin
from avalanche.distributed import DistributedHelper
from avalanche.evaluation.metrics import accuracy_metrics

from avalanche_mixplugins.experiments.streams import split_digits
from tests.support.cl import RecordingGradMix, cl_strategy, quiet_evaluator
from tests.support.nets import flat_params, make_mlp

GRADMIX_KWARGS = {"momentum": 0.5, "refresh": 0.2}
"""Shared with the single-process check in test_gradmix.py."""


class StepRecorder(SupervisedPlugin):
    """Records, from the second experience on, each step's inputs and outputs."""

    def __init__(self, plugin: RecordingGradMix):
        super().__init__()
        self.plugin = plugin
        self.steps: list[dict] = []
        self._before: dict | None = None

    def before_training_iteration(self, strategy, **kwargs):
        self.plugin.last_batch = None
        if strategy.experience.current_experience == 0:
            self._before = None
            return
        model = strategy.model
        model = getattr(model, "module", model)
        self._before = {
            "experience": int(strategy.experience.current_experience),
            "params": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "plugin": self.plugin.state_dict(),
        }

    def after_training_iteration(self, strategy, **kwargs):
        b = self.plugin.last_batch
        if self._before is None or b is None:
            return
        p = self.plugin
        self.steps.append(
            {
                **self._before,
                "x": b.x.detach().clone(),
                "y": b.y.clone(),
                "t": b.t.clone(),
                "is_buffer": b.is_buffer.clone(),
                "partner": b.partner.clone(),
                "active": b.active.clone(),
                "lam": b.lam.clone(),
                "x_mix": b.x_mix.detach().clone(),
                "pair_scores": p.pair_scores,
                "scored_pairs": p.scored_pairs,
                "last_inner": p.last_inner.clone(),
                "helpful": p.policy.helpful(b.y, b.partner).clone(),
            }
        )


def train(space: str, rank: int):
    torch.manual_seed(0)
    bench = split_digits(n_experiences=5, seed=0)
    model = DistributedHelper.wrap_model(make_mlp())
    plugin = RecordingGradMix(seed=100 + rank, grad_space=space, **GRADMIX_KWARGS)
    recorder = StepRecorder(plugin)
    strategy = cl_strategy(
        "naive_replay",
        model,
        [plugin, recorder],
        train_epochs=1,
        evaluator=quiet_evaluator(accuracy_metrics(stream=True)),
    )
    for exp in bench.train_stream[:3]:
        strategy.train(exp)
    return plugin, recorder, strategy


def main(out: str) -> None:
    warnings.filterwarnings("ignore")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    DistributedHelper.init_distributed(random_seed=0, backend="gloo", use_cuda=False)
    rank, world = dist.get_rank(), dist.get_world_size()
    summary = {}
    for space in ("last", "full"):
        try:
            plugin, recorder, strategy = train(space, rank)
        except RuntimeError as err:  # raised on both ranks at the same step
            summary[space] = {"error": f"{type(err).__name__}: {err}"[:1000]}
            continue
        torch.save(recorder.steps, out_dir / f"rank{rank}_{space}.pt")
        scores = plugin.pair_scores
        gathered = [torch.zeros_like(scores) for _ in range(world)]
        dist.all_gather(gathered, scores)
        params = flat_params(strategy.model)
        all_params = [torch.zeros_like(params) for _ in range(world)]
        dist.all_gather(all_params, params)
        summary[space] = {
            "scores": [g.tolist() for g in gathered],
            "seen": plugin.scored_pairs.tolist(),
            "params_equal": bool(torch.equal(all_params[0], all_params[1])),
            "steps": len(recorder.steps),
        }
    if rank == 0:
        (out_dir / "summary.json").write_text(json.dumps(summary))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
