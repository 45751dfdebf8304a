"""Worker launched by test_distributed.py under torchrun (2 CPU processes, gloo).

Each rank trains Naive + ReplayPlugin + GradMixPlugin on its share of split
digits, with a different plugin seed per rank (so the ranks draw different
pairs); rank 0 writes every rank's pair scores to the JSON path given.
"""

from __future__ import annotations

import json
import sys
import warnings

import torch
import torch.distributed as dist
from avalanche.distributed import DistributedHelper
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.training import Naive
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
from nets import make_mlp

from avalanche_mixplugins import GradMixPlugin
from avalanche_mixplugins.benchmarks import split_digits


def main(path: str) -> None:
    warnings.filterwarnings("ignore")
    DistributedHelper.init_distributed(random_seed=0, backend="gloo", use_cuda=False)
    rank = dist.get_rank()
    bench = split_digits(n_experiences=5, seed=0)
    model = DistributedHelper.wrap_model(make_mlp())
    plugin = GradMixPlugin(seed=100 + rank)
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
        train_mb_size=32,
        train_epochs=1,
        device="cpu",
        plugins=[ReplayPlugin(mem_size=100), plugin],
        evaluator=EvaluationPlugin(accuracy_metrics(stream=True), loggers=[]),
    )
    for exp in bench.train_stream[:3]:
        strategy.train(exp)
    scores = plugin.pair_scores
    gathered = [torch.zeros_like(scores) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, scores)
    params = torch.cat([p.detach().flatten() for p in model.parameters()])
    all_params = [torch.zeros_like(params) for _ in range(dist.get_world_size())]
    dist.all_gather(all_params, params)
    if rank == 0:
        with open(path, "w") as f:
            json.dump(
                {
                    "scores": [g.tolist() for g in gathered],
                    "seen": plugin.scored_pairs.tolist(),
                    "params_equal": bool(torch.equal(all_params[0], all_params[1])),
                },
                f,
            )
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
