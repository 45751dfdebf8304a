"""Training runs of the plugin tests: a plugin on each replay setup of split digits."""

from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import accuracy_metrics

from avalanche_mixplugins import CutMixPlugin, GradMixPlugin, MixupPlugin
from tests.support.cl import REPLAY_SETUPS, cl_strategy, quiet_evaluator
from tests.support.nets import make_mlp

ACC = "Top1_Acc_Stream/eval_phase/test_stream/Task000"

PLUGINS = {
    "mixup": lambda: MixupPlugin(seed=1),
    "cutmix": lambda: CutMixPlugin(seed=1),
    "gradmix": lambda: GradMixPlugin(seed=1, no_buffer="mixup"),
    "gradmix_cutmix": lambda: GradMixPlugin(seed=1, no_buffer="mixup", mix="cutmix"),
}
SETUPS = [*REPLAY_SETUPS, "naive"]


class LossRecorder(SupervisedPlugin):
    """Records the loss the optimizer steps on (after every plugin added its term)."""

    def __init__(self):
        super().__init__()
        self.losses: list[float] = []

    def before_update(self, strategy, **kwargs):
        self.losses.append(float(strategy.loss))


def run(setup, bench, plugin=None, extra=(), n_exp=2, seed=0):
    """Train ``n_exp`` experiences of ``setup`` (an MLP, SGD with momentum) with
    ``plugin`` then ``extra``; returns the losses stepped on, the accuracy on
    the test experiences seen and the strategy."""
    torch.manual_seed(seed)
    model = make_mlp()
    rec = LossRecorder()
    plugins = [p for p in (plugin,) if p is not None] + list(extra) + [rec]
    # ER-AML needs >= train_mb_size samples per buffer class group.
    mem_size, batch_size_mem = (400, 32) if setup == "er_aml" else (100, 16)
    strategy = cl_strategy(
        setup,
        model,
        plugins,
        mem_size=mem_size,
        batch_size_mem=batch_size_mem,
        momentum=0.9,
        train_epochs=1,
        eval_mb_size=256,
        evaluator=quiet_evaluator(accuracy_metrics(stream=True)),
    )
    for exp in bench.train_stream[:n_exp]:
        strategy.train(exp)
    res = strategy.eval(bench.test_stream[:n_exp])
    return rec.losses, res[ACC], strategy
