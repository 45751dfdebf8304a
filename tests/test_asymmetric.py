"""Under ER-ACE the mixed loss follows the strategy's asymmetric cross-entropy.

ER-ACE trains current samples over the current classes only, so that they
never push previous-class logits down. A mixed sample of two current samples
must be trained the same way, or the mixing plugin undoes the strategy. The
test recomputes the mixed loss from the raw head outputs of the step.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from avalanche.training import ER_ACE, Naive
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
from nets import PlainConvNet

from avalanche_mixplugins import GradMixPlugin, MixupPlugin
from avalanche_mixplugins.mixing import one_hot


class Check(SupervisedPlugin):
    def __init__(self, plugin, calls, fn):
        super().__init__()
        self.plugin, self.calls, self.fn, self.steps = plugin, calls, fn, 0

    def before_training_iteration(self, strategy, **kwargs):
        self.calls.clear()

    def before_backward(self, strategy, **kwargs):
        if strategy.experience.current_experience >= 1:
            self.fn(strategy, self.plugin, self.calls[-1])
            self.steps += 1


def _train(strategy_cls, plugin, fn, bench):
    torch.manual_seed(0)
    model = PlainConvNet(num_classes=10)
    calls = []
    model.fc.register_forward_hook(lambda m, a, out: calls.append(out.detach()))
    check = Check(plugin, calls, fn)
    kw = dict(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
        train_mb_size=32,
        train_epochs=1,
        device="cpu",
        evaluator=EvaluationPlugin(loggers=[]),
    )
    if strategy_cls is ER_ACE:
        strategy = ER_ACE(
            mem_size=100, batch_size_mem=32, plugins=[plugin, check], **kw
        )
    else:
        strategy = Naive(plugins=[ReplayPlugin(mem_size=100), plugin, check], **kw)
    for exp in bench.train_stream[:2]:
        strategy.train(exp)
    return check.steps


@pytest.mark.parametrize(
    "make", [lambda: MixupPlugin(seed=0), lambda: GradMixPlugin(seed=0)]
)
def test_er_ace_current_pairs_are_trained_over_current_classes(make, digits_benchmark):
    plugin = make()
    counts = {"masked_rows": 0, "full_rows": 0}

    def fn(strategy, plugin, z_raw):
        batch = plugin.last_batch
        current = {int(c) for c in strategy.experience.classes_in_this_experience}
        old = torch.tensor([int(c) not in current for c in batch.y])
        cur_pair = ~old & ~old[batch.partner]
        present = sorted({int(c) for c in strategy.mb_y})
        lam = batch.lam.view(-1, 1)
        t = lam * one_hot(batch.y, 10) + (1 - lam) * one_hot(batch.y[batch.partner], 10)
        per = torch.empty(batch.y.shape[0])
        for i in range(batch.y.shape[0]):
            cols = present if cur_pair[i] else list(range(10))
            per[i] = F.cross_entropy(z_raw[i : i + 1, cols], t[i : i + 1, cols])
        w = plugin.last_weights
        n = (
            batch.y.shape[0]
            if isinstance(plugin, GradMixPlugin)
            else batch.active.sum()
        )
        expected = (per * w).sum() / n
        assert torch.allclose(plugin.last_loss, expected, rtol=1e-5, atol=1e-7)
        counts["masked_rows"] += int((cur_pair & batch.active).sum())
        counts["full_rows"] += int((~cur_pair & batch.active).sum())

    steps = _train(ER_ACE, plugin, fn, digits_benchmark)
    assert steps > 5 and counts["masked_rows"] > 0 and counts["full_rows"] > 0


def test_naive_replay_keeps_every_logit(digits_benchmark):
    plugin = MixupPlugin(seed=0)

    def fn(strategy, plugin, z_raw):
        assert plugin.last_batch.logit_mask is None
        assert torch.isfinite(plugin.last_batch.logits).all()

    assert _train(Naive, plugin, fn, digits_benchmark) > 5


def test_asymmetric_can_be_forced_either_way(digits_benchmark):
    off = MixupPlugin(seed=0, asymmetric=False)

    def fn_off(strategy, plugin, z_raw):
        assert plugin.last_batch.logit_mask is None

    assert _train(ER_ACE, off, fn_off, digits_benchmark) > 5
    with pytest.raises(ValueError, match="asymmetric"):
        MixupPlugin(asymmetric="yes")
