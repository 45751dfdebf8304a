"""Worker launched by test_semi_supervised.py under torchrun (2 CPU processes, gloo).

Each rank trains ``SemiSupervisedStrategy`` (FlexMatch, then SoftMatch) on
digits with a DDP model; after every training step a plugin gathers every
rank's pseudo-labelling statistics and the unlabeled indices each rank drew.
Rank 0 writes a JSON summary to the path given.
"""

from __future__ import annotations

import json
import sys
import warnings

import torch
import torch.distributed as dist
from avalanche.core import SupervisedPlugin
from avalanche.distributed import DistributedHelper

from ssl_ext.calibratemix_plugin import CalibrateMixPlugin
from tests.support.nets import flat_params, two_conv_cnn
from tests.support.semi_supervised import ssl_digits, ssl_strategy


def gather(t: torch.Tensor) -> list[torch.Tensor]:
    return DistributedHelper.gather_all(t.detach().float().contiguous())


class StatsProbe(SupervisedPlugin, supports_distributed=True):
    """After each step: do all ranks hold the same statistics? Which unlabeled
    indices did each rank draw?"""

    def __init__(self):
        super().__init__()
        self.steps = 0
        self.identical_steps = 0
        self.gather_ok = True
        self.drawn: list[list[int]] = [[] for _ in range(DistributedHelper.world_size)]

    def after_training_iteration(self, strategy, **kwargs):
        state = strategy.pseudo_labeler.state_dict()
        same = True
        for value in state.values():
            if isinstance(value, torch.Tensor):
                parts = gather(value)
                same &= all(torch.equal(parts[0], p) for p in parts[1:])
        self.steps += 1
        self.identical_steps += int(same)
        parts = gather(strategy.mb_ulb_index)
        for rank, idx in enumerate(parts):
            self.drawn[rank].extend(int(i) for i in idx)
        (rows,) = strategy.gather_from_ranks(strategy.mb_ulb_index)
        self.gather_ok &= torch.equal(rows.float(), torch.cat(parts))


def run(algorithm: str, kwargs: dict, bench, unlabeled, calibratemix=False) -> dict:
    net = DistributedHelper.wrap_model(two_conv_cnn(batch_norm=False))
    probe = StatsProbe()
    cmix = (
        CalibrateMixPlugin(mode="fast", warmup=0, seed=DistributedHelper.rank)
        if calibratemix
        else None
    )
    strategy = ssl_strategy(
        net,
        unlabeled,
        [probe] + ([cmix] if cmix else []),
        lr=0.05,
        momentum=0.9,
        algorithm=algorithm,
        algorithm_kwargs=kwargs,
        train_iterations=6,
    )
    strategy.train(bench.train_stream[0])
    state = strategy.pseudo_labeler.state_dict()
    summary = {
        "steps": probe.steps,
        "identical_steps": probe.identical_steps,
        "drawn": probe.drawn,
        "gather_ok": probe.gather_ok,
    }
    if algorithm == "flexmatch":
        summary["selected"] = state["selected_label"].tolist()
        summary["thresholds"] = strategy.pseudo_labeler.class_thresholds().tolist()
    else:
        summary["mu"] = float(state["prob_max_mu"])
        summary["p_model"] = state["p_model"].tolist()
    if cmix is not None:
        tables = {
            "aum": cmix.aum.state_dict()["count"],
            "apm": cmix.apm.state_dict()["count"],
        }
        for name, count in tables.items():
            parts = gather(count)
            summary[f"{name}_identical"] = all(
                torch.equal(parts[0], p) for p in parts[1:]
            )
            summary[f"{name}_rows"] = torch.nonzero(count > 0)[:, 0].tolist()
    parts = gather(flat_params(net))
    summary["params_equal"] = all(torch.equal(parts[0], p) for p in parts[1:])
    return summary


def main(path: str) -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    DistributedHelper.init_distributed(random_seed=0, backend="gloo", use_cuda=False)
    bench, unlabeled = ssl_digits(per_class=4, n_test=50, n_unlabeled=300)
    result = {
        "flexmatch": run("flexmatch", {"threshold": 0.12}, bench, unlabeled),
        "softmatch": run("softmatch", {}, bench, unlabeled),
        "calibratemix": run("softmatch", {}, bench, unlabeled, calibratemix=True),
    }
    if DistributedHelper.rank == 0:
        with open(path, "w") as f:
            json.dump(result, f)
    DistributedHelper.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
