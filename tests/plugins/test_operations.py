"""The mixing operation as a choice: timm's switch, GradMix's per-operation
scores, and the ``"replace"`` loss form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from avalanche.core import SupervisedPlugin
from timm.data import mixup as timm_mixup

from avalanche_mixplugins import GradMixPlugin, MixupCutMixPlugin, MixupPlugin
from avalanche_mixplugins.mixing import box_masks, mix_by_operation, mix_targets
from avalanche_mixplugins.operation_pairs import OperationPairs, draw_partner_operation
from tests.support.cl import cl_strategy
from tests.support.nets import two_conv_cnn


def _digit_images(digits_tensors, n=16):
    x, y = digits_tensors[0][:n], digits_tensors[1][:n]
    return x.float().reshape(n, 1, 8, 8), y.long()


# -- timm's Mixup as the reference ---------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_switch_matches_timm_mixup_given_its_lambda_permutation_and_box(
    digits_tensors, seed
):
    """timm's batch mode with both alphas: same lam, reversed-batch partners and
    (for CutMix) timm's own box give the same mixed batch and soft targets."""
    x, y = _digit_images(digits_tensors)
    fn = timm_mixup.Mixup(
        mixup_alpha=0.8,
        cutmix_alpha=1.0,
        switch_prob=0.5,
        label_smoothing=0.0,
        num_classes=10,
    )
    np.random.seed(seed)
    x_timm, t_timm = fn(x.clone(), y)
    np.random.seed(seed)  # replay timm's draws: its parameters, then its box
    lam, use_cutmix = fn._params_per_batch()
    partner = torch.arange(x.shape[0] - 1, -1, -1)
    op = torch.full((x.shape[0],), int(use_cutmix))
    if use_cutmix:
        (y0, y1, x0, x1), lam = timm_mixup.cutmix_bbox_and_lam(x.shape, lam)
        boxes = torch.tensor([[y0, y1, x0, x1]] * x.shape[0])
        ours = torch.where(box_masks(boxes, 8, 8), x[partner], x)
        lam_y = torch.full((x.shape[0],), float(lam))
    else:
        ours, lam_y = mix_by_operation(x, partner, torch.full((16,), lam), op)
    assert torch.allclose(ours, x_timm, atol=1e-6)
    assert torch.allclose(mix_targets(y, partner, lam_y, 10), t_timm, atol=1e-6)


def test_mix_by_operation_selects_per_sample_and_corrects_cutmix_weights(
    digits_tensors,
):
    x, _ = _digit_images(digits_tensors)
    x = x + 1e-3 * torch.rand(x.shape)  # every pixel differs between two images
    partner = torch.roll(torch.arange(16), 3)
    lam = torch.linspace(0.05, 0.95, 16)
    op = torch.tensor([0, 1] * 8)
    gen = torch.Generator().manual_seed(0)
    mixed, lam_y = mix_by_operation(x, partner, lam, op, generator=gen)
    for i in range(16):
        if op[i] == 0:  # an interpolation, by hand
            ref = lam[i] * x[i] + (1 - lam[i]) * x[partner[i]]
            assert torch.allclose(mixed[i], ref, atol=1e-6)
            assert lam_y[i] == lam[i]
        else:  # each pixel is one source's; the weight is the own-pixel share
            own = mixed[i] == x[i]
            pasted = mixed[i] == x[partner[i]]
            assert bool((own ^ pasted).all())
            assert torch.isclose(lam_y[i], own.float().mean())
    with pytest.raises(ValueError, match="partner's shape"):
        mix_by_operation(x, partner, lam, op[:3])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        mix_by_operation(x.flatten(1), partner, lam, op)


# -- joint draw of partner and operation ---------------------------------------
def test_partner_and_operation_are_drawn_uniformly_among_admissible_entries():
    weights = torch.zeros(2, 3, 3, dtype=torch.bool)
    weights[0, 0, 1] = weights[1, 0, 1] = weights[1, 0, 2] = True  # row 0: 3 entries
    weights[1, 1, 0] = True  # row 1: cutmix with 0 only
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(3, 2, 3)
    n = 3000
    for _ in range(n):
        partner, active, op = draw_partner_operation(weights, generator=gen)
        counts[torch.arange(3), op, partner] += 1
        assert active.tolist() == [True, True, False]
        assert partner[2] == 2 and op[2] == 0  # no entry: itself, not active
    assert counts[1, 1, 0] == n
    share = counts[0][weights[:, 0, :]] / n  # three admissible entries of row 0
    # binomial(3000, 1/3): sd 0.0086; 5 sd
    assert torch.all((share - 1 / 3).abs() < 0.043), share
    assert counts[0][~weights[:, 0, :]].sum() == 0


def test_operation_pairs_move_the_draw_to_the_operation_the_scores_allow():
    policy = OperationPairs(refresh=0.0, kind_prior=False)
    policy.grow(2)
    y = torch.tensor([0, 0, 1, 1, 1, 1])
    is_buffer = y == 0
    mix, cut = policy.policies
    # pair (0, 1): detrimental under Mixup, helpful under CutMix
    mix.scores[0, 1] = mix.scores[1, 0] = -1.0
    cut.scores[0, 1] = cut.scores[1, 0] = 2.0
    for p in policy.policies:
        p.seen[0, 1] = p.seen[1, 0] = True
    gen = torch.Generator().manual_seed(1)
    for _ in range(50):
        partner, active, op = policy.select(y, is_buffer, generator=gen)
        cross = active & (y != y[partner])
        assert bool((op[cross] == 1).all())
        helpful = policy.helpful(y, partner, operation=op)
        # brute force: helpful iff the pair's score under its own op is > 0
        for i in range(6):
            pol = policy.policies[int(op[i])]
            a, b = int(y[i]), int(y[partner[i]])
            expect = bool(pol.seen[a, b]) and float(pol.scores[a, b]) > 0
            assert bool(helpful[i]) == expect
    # evidence goes to the operation that produced it
    inner = torch.tensor([1.0, -3.0, 1.0, 1.0, 1.0, 1.0])
    partner = torch.tensor([2, 3, 0, 1, 5, 4])
    op = torch.tensor([0, 1, 0, 1, 0, 1])
    sums, counts = policy.batch_pair_sums(
        y, partner, inner, torch.ones(6, dtype=torch.bool), operation=op
    )
    assert sums.shape == (2, 2, 2)
    # Mixup: (0, 1) from samples 0 and 2; CutMix: (0, 1) from 1 and 3
    assert sums[0, 0, 1] == 2.0 and counts[0, 0, 1] == 2
    assert sums[1, 0, 1] == -2.0 and counts[1, 0, 1] == 2
    # a same-class pair is added under (a, b) and (b, a), the same cell: the
    # sum and the count are doubled, the mean is not
    assert sums[0, 1, 1] == 2.0 and counts[0, 1, 1] == 2
    assert sums[1, 1, 1] == 2.0 and counts[1, 1, 1] == 2
    policy.update(sums, counts)
    m = policy.policies[0].momentum
    assert torch.isclose(mix.scores[0, 1], torch.tensor(m * -1.0 + (1 - m) * 1.0))
    assert torch.isclose(cut.scores[0, 1], torch.tensor(m * 2.0 + (1 - m) * -1.0))
    state = policy.state_dict()
    other = OperationPairs(refresh=0.0, kind_prior=False)
    other.load_state_dict(state)
    assert torch.equal(other.policies[1].scores, cut.scores)


# -- the plugins in real strategies --------------------------------------------
class _Operations(SupervisedPlugin):
    """Records each step's operations (after the mixing plugin's before_backward)."""

    def __init__(self, plugin):
        super().__init__()
        self.plugin, self.steps = plugin, []

    def before_backward(self, strategy, **kwargs):
        batch = self.plugin.last_batch
        if batch is not None and batch.operation is not None:
            self.steps.append(batch.operation.clone())
        self.plugin.last_batch = None


def _train(plugin, bench, n_exp=2, extra=()):
    torch.manual_seed(0)
    rec = _Operations(plugin)
    strategy = cl_strategy(
        "naive_replay", two_conv_cnn(), [plugin, rec, *extra], train_epochs=4
    )
    for exp in bench.train_stream[:n_exp]:
        strategy.train(exp)
    return rec.steps


@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_switch_plugin_draws_cutmix_with_switch_prob(digits_benchmark, mode):
    plugin = MixupCutMixPlugin(switch_prob=0.3, mode=mode, seed=0)
    steps = _train(plugin, digits_benchmark)
    assert len(steps) >= 60
    if mode == "batch":  # one operation per step
        assert all(bool((s == s[0]).all()) for s in steps)
        share = torch.stack([s[0] for s in steps]).float().mean()
        tol = 5 * (0.3 * 0.7 / len(steps)) ** 0.5
    else:
        assert any(bool((s != s[0]).any()) for s in steps)
        flat = torch.cat(steps).float()
        share, tol = flat.mean(), 5 * (0.3 * 0.7 / flat.numel()) ** 0.5
    assert abs(float(share) - 0.3) < tol


def test_gradmix_auto_uses_both_operations_and_scores_each(digits_benchmark):
    plugin = GradMixPlugin(mix="auto", seed=0)
    steps = _train(plugin, digits_benchmark, n_exp=3)
    flat = torch.cat(steps)
    assert 0 < float(flat.float().mean()) < 1
    scores = plugin.policy.operation_scores()
    assert set(scores) == {"mixup", "cutmix"}
    for p in plugin.policy.policies:
        assert bool(p.seen.any())
    assert plugin.helpful_fraction() == plugin.helpful_fraction()  # not NaN
    with pytest.raises(ValueError, match="mix must be one of"):
        GradMixPlugin(mix="blend")


class _LossAt(SupervisedPlugin):
    def __init__(self):
        super().__init__()
        self.values = []

    def before_backward(self, strategy, **kwargs):
        self.values.append(strategy.loss.detach().clone())


@pytest.mark.parametrize("weight", [0.25, 1.0])
def test_replace_loss_form_gives_the_mixed_loss_a_share_of_the_total(
    digits_benchmark, weight
):
    before, after = _LossAt(), _LossAt()
    plugin = MixupPlugin(weight=weight, loss_form="replace", seed=0)
    mixed = []

    class _Mixed(SupervisedPlugin):
        def before_backward(self, strategy, **kwargs):
            mixed.append(plugin.last_loss.clone())

    torch.manual_seed(0)
    strategy = cl_strategy(
        "naive_replay", two_conv_cnn(), [before, plugin, after, _Mixed()]
    )
    strategy.train(digits_benchmark.train_stream[0])
    assert len(mixed) > 5
    for b, a, m in zip(before.values, after.values, mixed):
        assert torch.isclose(a, (1 - weight) * b + weight * m, atol=1e-6)
    with pytest.raises(ValueError, match=r"weight in \[0, 1\]"):
        MixupPlugin(weight=2.0, loss_form="replace")
    with pytest.raises(ValueError, match="loss_form must be one of"):
        MixupPlugin(loss_form="mean")
