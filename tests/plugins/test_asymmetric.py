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

from avalanche_mixplugins import GradMixPlugin, MixupPlugin
from avalanche_mixplugins.mixing import one_hot
from tests.support.cl import cl_strategy
from tests.support.nets import PlainConvNet


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


def _train(setup, plugin, fn, bench):
    torch.manual_seed(0)
    model = PlainConvNet(num_classes=10)
    calls = []
    model.fc.register_forward_hook(lambda m, a, out: calls.append(out.detach()))
    check = Check(plugin, calls, fn)
    strategy = cl_strategy(
        setup, model, [plugin, check], batch_size_mem=32, train_epochs=1
    )
    for exp in bench.train_stream[:2]:
        strategy.train(exp)
    return check.steps


@pytest.mark.parametrize(
    "make",
    [lambda: MixupPlugin(seed=0), lambda: GradMixPlugin(seed=0, asymmetric="current")],
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

    steps = _train("er_ace", plugin, fn, digits_benchmark)
    assert steps > 5 and counts["masked_rows"] > 0 and counts["full_rows"] > 0


def test_naive_replay_keeps_every_logit(digits_benchmark):
    plugin = MixupPlugin(seed=0)

    def fn(strategy, plugin, z_raw):
        assert plugin.last_batch.logit_mask is None
        assert torch.isfinite(plugin.last_batch.logits).all()

    assert _train("naive_replay", plugin, fn, digits_benchmark) > 5


def test_asymmetric_can_be_forced_either_way(digits_benchmark):
    off = MixupPlugin(seed=0, asymmetric=False)

    def fn_off(strategy, plugin, z_raw):
        assert plugin.last_batch.logit_mask is None

    assert _train("er_ace", off, fn_off, digits_benchmark) > 5
    with pytest.raises(ValueError, match="asymmetric"):
        MixupPlugin(asymmetric="yes")
    assert MixupPlugin(asymmetric=True)._asymmetric(None) == "current"


def _weights_against_scores(setup, plugin, bench):
    """Per step: current-pair and buffer-pair candidates, their scores and weights."""
    seen = {"cur_neg_kept": 0, "cur_neg_dropped": 0, "buf_neg_kept": 0, "buf_pos": 0}

    def fn(strategy, plugin, z_raw):
        batch, w = plugin.last_batch, plugin.last_weights
        scores, scored = plugin.pair_scores, plugin.scored_pairs
        current = {int(c) for c in strategy.experience.classes_in_this_experience}
        for i in range(batch.y.shape[0]):
            if not batch.active[i]:
                continue
            a, b = int(batch.y[i]), int(batch.y[batch.partner[i]])
            positive = bool(scored[a, b]) and float(scores[a, b]) > 0
            if a in current and b in current:
                if not positive:
                    key = "cur_neg_kept" if w[i] == 1 else "cur_neg_dropped"
                    seen[key] += 1
            elif positive:
                seen["buf_pos"] += 1
                assert w[i] == 1
            else:
                seen["buf_neg_kept"] += int(w[i] != 0)

    _train(setup, plugin, fn, bench)
    return seen


def test_er_ace_mixes_current_pairs_whatever_their_score(digits_benchmark):
    # Under the asymmetric loss a mix of two current samples never reaches a
    # previous-class logit: it is kept as plain Mixup would keep it, while a
    # mix with a buffer source still needs a positive pair score.
    seen = _weights_against_scores("er_ace", GradMixPlugin(seed=0), digits_benchmark)
    assert seen["cur_neg_kept"] > 0 and seen["cur_neg_dropped"] == 0
    assert seen["buf_neg_kept"] == 0 and seen["buf_pos"] > 0


def test_symmetric_loss_filters_current_pairs_by_score(digits_benchmark):
    seen = _weights_against_scores(
        "naive_replay", GradMixPlugin(seed=0), digits_benchmark
    )
    assert seen["cur_neg_kept"] == 0 and seen["cur_neg_dropped"] > 0
    forced = GradMixPlugin(seed=0, filter_current=True)
    seen = _weights_against_scores("er_ace", forced, digits_benchmark)
    assert seen["cur_neg_kept"] == 0 and seen["cur_neg_dropped"] > 0
    with pytest.raises(ValueError, match="filter_current"):
        GradMixPlugin(filter_current="auto")


def test_exempt_classes_are_drawn_and_kept_despite_a_negative_score():
    from avalanche_mixplugins.pairing import GradientPairs

    policy = GradientPairs(refresh=0.0)
    policy.grow(4)
    # every pair scored detrimental
    policy.update(-torch.ones(4, 4), torch.ones(4, 4))
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    is_buffer = y >= 2
    gen = torch.Generator().manual_seed(0)
    _, active = policy.select(y, is_buffer, generator=gen)
    assert not active.any()
    policy.exempt = torch.tensor([True, True, False, False])
    partner, active = policy.select(y, is_buffer, generator=gen)
    # only the exempt classes (0, 1) find partners, and only among themselves
    assert active.tolist() == [True] * 4 + [False] * 4
    assert (y[partner[:4]] <= 1).all()
    helpful = policy.helpful(y, partner)
    assert helpful[:4].all() and not helpful[4:].any()


@pytest.mark.parametrize("cls", [MixupPlugin, GradMixPlugin])
def test_both_mode_keeps_buffer_pairs_off_the_current_classes(cls, digits_benchmark):
    # GradMix's default under ER-ACE is "both"; Mixup's is "current"
    plugin = cls(seed=0) if cls is GradMixPlugin else cls(seed=0, asymmetric="both")
    counts = {"buffer_rows": 0}

    def fn(strategy, plugin, z_raw):
        batch = plugin.last_batch
        current = {int(c) for c in strategy.experience.classes_in_this_experience}
        old = torch.tensor([int(c) not in current for c in batch.y])
        present = sorted({int(c) for c in strategy.mb_y})
        rest = [c for c in range(10) if c not in present]
        lam = batch.lam.view(-1, 1)
        t = lam * one_hot(batch.y, 10) + (1 - lam) * one_hot(batch.y[batch.partner], 10)
        per = torch.empty(batch.y.shape[0])
        for i in range(batch.y.shape[0]):
            j = int(batch.partner[i])
            if not old[i] and not old[j]:
                cols = present
            elif old[i] and old[j]:
                cols = rest
            else:
                cols = list(range(10))
            per[i] = F.cross_entropy(z_raw[i : i + 1, cols], t[i : i + 1, cols])
        w = plugin.last_weights
        n = batch.y.shape[0] if cls is GradMixPlugin else batch.active.sum()
        expected = (per * w).sum() / n
        assert torch.allclose(plugin.last_loss, expected, rtol=1e-5, atol=1e-7)
        counts["buffer_rows"] += int((old & old[batch.partner] & (w > 0)).sum())

    assert _train("er_ace", plugin, fn, digits_benchmark) > 5
    assert counts["buffer_rows"] > 0
