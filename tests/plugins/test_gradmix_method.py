"""GradMix does what the method says, checked inside a real Avalanche run.

Every check compares the plugin with an independent computation made by the
test itself on the same step: the class-pair scores against autograd
gradients of the head with a brute-force leave-one-out buffer set, the mixed
loss against a soft-target cross-entropy over the pairs the scores call
helpful, and the partners against the scores that stood before they were
drawn. Each of these fails when the method is broken (sign flipped, buffer
taken from current classes, a candidate's own source in the buffer mean,
scores ignored by the loss or by the pairing).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from torch import nn

from avalanche_mixplugins import GradMixPlugin
from avalanche_mixplugins.gradients import (
    last_layer_gradient_sum,
    last_layer_inner_products,
    last_layer_paired_inner_products,
    leave_one_out_mean,
)
from avalanche_mixplugins.mixing import one_hot
from avalanche_mixplugins.pairing import GradientPairs
from tests.support.cl import cl_strategy, replay_storage
from tests.support.nets import PlainConvNet


class HeadRecorder:
    """Forward hook on the head: inputs and outputs of every call of a step."""

    def __init__(self, head: nn.Module):
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        head.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        self.calls.append((args[0].detach().clone(), output.detach().clone()))


class Before(SupervisedPlugin):
    """Snapshot of the pair scores before GradMix draws partners (listed first)."""

    def __init__(self, gradmix, recorder):
        super().__init__()
        self.gradmix, self.recorder = gradmix, recorder
        self.scores = self.seen = None

    def before_training_iteration(self, strategy, **kwargs):
        self.recorder.calls.clear()

    def before_backward(self, strategy, **kwargs):
        self.scores = self.gradmix.pair_scores
        self.seen = self.gradmix.scored_pairs


class After(SupervisedPlugin):
    """Runs after GradMix's ``before_backward``; checks the step by a callback."""

    def __init__(self, check):
        super().__init__()
        self.check = check
        self.steps = 0

    def before_backward(self, strategy, **kwargs):
        if strategy.experience.current_experience >= 1:
            self.check(strategy)
            self.steps += 1


def _run(gradmix, make_check, bench, n_exp=2):
    """Train ``n_exp`` experiences of Naive + ReplayPlugin + ``gradmix``.

    ``make_check(recorder, before)`` returns the per-step check, called after
    GradMix's ``before_backward`` from the second experience on.
    """
    torch.manual_seed(0)
    model = PlainConvNet(num_classes=10)
    recorder = HeadRecorder(model.fc)
    before = Before(gradmix, recorder)
    after = After(make_check(recorder, before))
    strategy = cl_strategy(
        "naive_replay",
        model,
        [before, gradmix, after],
        momentum=0.9,
        train_epochs=1,
        eval_mb_size=256,
    )
    for exp in bench.train_stream[:n_exp]:
        strategy.train(exp)
    return after


def _soft_targets(batch, c=10):
    lam = batch.lam.view(-1, 1)
    return lam * one_hot(batch.y, c) + (1 - lam) * one_hot(batch.y[batch.partner], c)


def _autograd_scores(head, h_pool, y, is_buffer, h_mix, t_mix, partner):
    """Brute force: per candidate, autograd gradients and its own buffer set."""
    params = list(head.parameters())
    out = []
    for i in range(h_mix.shape[0]):
        others = [
            k
            for k in range(h_pool.shape[0])
            if bool(is_buffer[k]) and k != i and k != int(partner[i])
        ]
        if not others:
            out.append(float("nan"))
            continue
        idx = torch.tensor(others)
        g_buf = torch.autograd.grad(F.cross_entropy(head(h_pool[idx]), y[idx]), params)
        g_i = torch.autograd.grad(
            F.cross_entropy(head(h_mix[i : i + 1]), t_mix[i : i + 1]), params
        )
        out.append(float(sum((a * b).sum() for a, b in zip(g_i, g_buf))))
    return torch.tensor(out)


def test_scores_are_leave_one_out_inner_products_with_the_old_class_gradient(
    digits_benchmark,
):
    gradmix = GradMixPlugin(seed=1)
    checked = []

    def make_check(recorder, before):
        def check(strategy):
            if len(checked) >= 4:
                return
            (h_pool, _), (h_mix, _) = recorder.calls[0], recorder.calls[1]
            batch = gradmix.last_batch
            current = {int(c) for c in strategy.experience.classes_in_this_experience}
            is_old = torch.tensor([int(c) not in current for c in batch.y])
            assert is_old.any() and (~is_old).any()
            ref = _autograd_scores(
                strategy.model.fc,
                h_pool,
                batch.y,
                is_old,
                h_mix,
                _soft_targets(batch),
                batch.partner,
            )
            got = gradmix.last_inner
            assert torch.equal(torch.isnan(ref), torch.isnan(got))
            ok = ~torch.isnan(ref)
            scale = float(ref[ok].abs().max())
            assert torch.allclose(got[ok], ref[ok], rtol=1e-4, atol=1e-6 * scale)
            checked.append(scale)

        return check

    _run(gradmix, make_check, digits_benchmark)
    assert len(checked) == 4 and min(checked) > 0


def test_mixed_loss_keeps_helpful_pairs_and_divides_by_candidates(digits_benchmark):
    gradmix = GradMixPlugin(seed=2)
    kinds = {"kept": 0, "dropped": 0}

    def make_check(recorder, before):
        def check(strategy):
            z_pool = recorder.calls[0][1]
            batch = gradmix.last_batch
            scores, seen = gradmix.pair_scores, gradmix.scored_pairs
            a, b = batch.y, batch.y[batch.partner]
            helpful = batch.active & seen[a, b] & (scores[a, b] > 0)
            ce = F.cross_entropy(batch.logits, _soft_targets(batch), reduction="none")
            # divided by what random-pair Mixup would mix: every sample here
            expected = (ce * helpful).sum() / batch.y.shape[0]
            assert torch.allclose(gradmix.last_loss, expected, rtol=1e-5, atol=1e-7)
            # the strategy optimises its own loss plus the weighted mixed loss
            own = F.cross_entropy(z_pool, strategy.mb_y)
            assert torch.allclose(
                strategy.loss.detach(), own + gradmix.weight * expected, rtol=1e-5
            )
            kinds["kept"] += int(helpful.sum())
            kinds["dropped"] += int((batch.active & ~helpful).sum())

        return check

    after = _run(gradmix, make_check, digits_benchmark)
    assert after.steps > 5
    # both kinds occur, so the check above could tell them apart
    assert kinds["kept"] > 0 and kinds["dropped"] > 0, kinds


def test_partners_never_form_a_pair_known_detrimental(digits_benchmark):
    gradmix = GradMixPlugin(seed=3, refresh=0.0)
    blocked_present = []

    def make_check(recorder, before):
        def check(strategy):
            scores, seen = before.scores, before.seen
            batch = gradmix.last_batch
            if seen.shape[0] <= int(batch.y.max()):
                blocked_present.append(0)  # first step: nothing scored yet
                return
            a, b = batch.y, batch.y[batch.partner]
            bad = seen[a, b] & (scores[a, b] <= 0)
            assert not (batch.active & bad).any(), "a known detrimental pair was mixed"
            ys = batch.y.unique()
            present = seen[ys][:, ys] & (scores[ys][:, ys] <= 0)
            blocked_present.append(int(present.sum()))

        return check

    _run(gradmix, make_check, digits_benchmark)
    # the policy had something to avoid in most steps (random pairs would hit it)
    assert sum(v > 0 for v in blocked_present) > len(blocked_present) // 2


def test_self_correlation_alone_makes_a_pair_look_helpful():
    """Hand-worked: with its own source in the buffer mean, a detrimental pair scores > 0.

    Head without bias and W = 0, so p is uniform over 3 classes. The buffer
    holds two class-0 samples, k1 at h = e1 and k2 at h = -e1 / 2. Candidate:
    k1 mixed with a class-1 sample at h = e3, lam = 1/2, mixed features
    h~ = (e1 + e3) / 2. With r = p - t: r~ . r_k = lam - 1/3 = 1/6 for both
    buffer samples, so <g~, g_k1> = 1/6 * 1/2 = 1/12 (its own source) and
    <g~, g_k2> = 1/6 * (-1/4) = -1/24. Mean with k1: +1/48 (helpful); without
    k1 (leave-one-out): -1/24 (detrimental).
    """
    e = torch.eye(3, dtype=torch.float64)
    h_pool = torch.stack([e[0], -0.5 * e[0], e[2]])
    y = torch.tensor([0, 0, 1])
    is_buffer = torch.tensor([True, True, False])
    z_pool = torch.zeros(3, 3, dtype=torch.float64)
    partner = torch.tensor([2, 0, 0])
    lam = torch.full((3,), 0.5, dtype=torch.float64)
    t = one_hot(y, 3).double()
    t_mix = lam.view(-1, 1) * t + (1 - lam.view(-1, 1)) * t[partner]
    h_mix = lam.view(-1, 1) * h_pool + (1 - lam.view(-1, 1)) * h_pool[partner]
    z_mix = torch.zeros(3, 3, dtype=torch.float64)
    g_w, _, count = last_layer_gradient_sum(h_pool, z_pool, t, is_buffer)
    biased = last_layer_inner_products(h_mix, z_mix, t_mix, g_w / count)
    assert biased[0] == pytest.approx(1 / 48)
    total = last_layer_inner_products(h_mix, z_mix, t_mix, g_w)
    own_a = last_layer_paired_inner_products(
        h_mix, z_mix, t_mix, h_pool, z_pool, t, bias=False
    )
    own_b = last_layer_paired_inner_products(
        h_mix, z_mix, t_mix, h_pool[partner], z_pool, t[partner], bias=False
    )
    loo = leave_one_out_mean(total, count, own_a, own_b, is_buffer, partner)
    assert loo[0] == pytest.approx(-1 / 24)
    # candidate 1 mixes both buffer samples: nothing independent is left
    assert torch.isnan(loo[1])
    # the policy follows the corrected sign
    policy = GradientPairs(momentum=0.0)
    policy.grow(3)
    valid = torch.tensor([True, False, False])
    policy.update(*policy.batch_pair_sums(y, partner, loo, valid))
    assert policy.seen[0, 1] and policy.scores[0, 1] < 0
    assert not policy.helpful(y, partner)[0]


def _tensors_of(dataset):
    loader = torch.utils.data.DataLoader(dataset.eval(), batch_size=2048)
    xs, ys = zip(*[(b[0], b[1]) for b in loader])
    return torch.cat(xs), torch.cat(ys)


def _fidelity(bench, seed):
    """(score, measured change of held-out old-class loss) for every scored pair."""
    torch.manual_seed(seed)
    model = PlainConvNet(num_classes=10)
    # the measurement of docs/gradmix.md was made with the first experience mixed
    gradmix = GradMixPlugin(seed=seed, no_buffer="mixup")
    strategy = cl_strategy(
        "naive_replay", model, [gradmix], momentum=0.9, train_epochs=3
    )
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i, exp in enumerate(bench.train_stream[:3]):
        strategy.train(exp)
        if i == 0:
            continue
        probe = copy.deepcopy(strategy.model).eval()
        x_old, y_old = zip(*[_tensors_of(e.dataset) for e in bench.test_stream[:i]])
        x_old, y_old = torch.cat(x_old), torch.cat(y_old)
        x_cur, y_cur = _tensors_of(exp.dataset)
        x_buf, y_buf = _tensors_of(replay_storage(strategy).buffer)
        pool_x, pool_y = torch.cat([x_cur, x_buf]), torch.cat([y_cur, y_buf])
        with torch.no_grad():
            base = float(F.cross_entropy(probe(x_old), y_old))
        scores, seen = gradmix.pair_scores, gradmix.scored_pairs
        for a, b in torch.nonzero(torch.triu(seen)).tolist():
            ia = torch.nonzero(pool_y == a).flatten()
            ib = torch.nonzero(pool_y == b).flatten()
            deltas = []
            for _ in range(4):
                sa = ia[torch.randint(0, ia.numel(), (32,), generator=gen)]
                sb = ib[torch.randint(0, ib.numel(), (32,), generator=gen)]
                lam = torch.rand(32, 1, 1, 1, generator=gen)
                x_mix = lam * pool_x[sa] + (1 - lam) * pool_x[sb]
                t = lam.view(-1, 1) * one_hot(pool_y[sa], 10) + (
                    1 - lam.view(-1, 1)
                ) * one_hot(pool_y[sb], 10)
                m = copy.deepcopy(probe)
                F.cross_entropy(m(x_mix), t).backward()
                with torch.no_grad():
                    for p in m.parameters():
                        p -= 0.01 * p.grad
                    deltas.append(float(F.cross_entropy(m(x_old), y_old)) - base)
            out.append((float(scores[a, b]), sum(deltas) / len(deltas)))
    return out


def test_pair_scores_predict_what_a_step_does_to_old_classes(digits_benchmark):
    """Sign agreement of the smoothed scores with an independent measurement.

    The measurement: one plain SGD step on fresh mixed samples of the pair and
    the change of the cross-entropy on held-out images of the previous classes
    (never trained on). benchmarks/gradmix_fidelity.py measures 0.80 overall and
    0.94 above the median |score| on this stream (small CNN with batch norm,
    training-mode step, 5 seeds, 155 pairs); the net here has no batch norm,
    so its step is the same in either mode. Here (seeds 0 and 1, 4 draws of
    32 mixed samples per pair) it gives 0.92 overall and 0.97 above the
    median (0.58 and 0.81 without the kind prior); a flipped score sign
    gives the complement.
    """
    rows = _fidelity(digits_benchmark, 0) + _fidelity(digits_benchmark, 1)
    s = torch.tensor([r[0] for r in rows])
    d = torch.tensor([r[1] for r in rows])
    agree = torch.sign(s) == -torch.sign(d)
    top = s.abs() >= s.abs().median()
    print(
        f"agreement {agree.float().mean():.2f}, above median {agree[top].float().mean():.2f}"
    )
    assert len(rows) >= 30
    assert agree[top].float().mean() >= 0.7
    assert agree.float().mean() >= 0.5


def test_first_experience_is_not_mixed_by_default(digits_benchmark):
    """Before any previous class exists no pair can be scored: no mixed loss."""
    losses = {0: [], 1: []}

    class Watch(SupervisedPlugin):
        def __init__(self, plugin):
            super().__init__()
            self.plugin = plugin

        def before_training_iteration(self, strategy, **kwargs):
            self.plugin.last_loss = None

        def before_backward(self, strategy, **kwargs):
            exp = strategy.experience.current_experience
            losses[exp].append(self.plugin.last_loss)

    gradmix = GradMixPlugin(seed=0)
    model = PlainConvNet(num_classes=10)
    strategy = cl_strategy("naive_replay", model, [gradmix, Watch(gradmix)])
    for exp in digits_benchmark.train_stream[:2]:
        strategy.train(exp)
    assert losses[0] and all(v is None for v in losses[0])
    assert any(v is not None for v in losses[1])


def test_kind_prior_follows_the_experiences(digits_benchmark):
    """With ``kind_prior`` the policy knows the current classes and starts each
    experience with no pair holding evidence of its own."""
    gradmix = GradMixPlugin(seed=0, kind_prior=True)
    seen = {}

    class Watch(SupervisedPlugin):
        def before_training_iteration(self, strategy, **kwargs):
            exp = strategy.experience.current_experience
            if exp not in seen:
                seen[exp] = bool(gradmix.policy.fresh.any())

    strategy = cl_strategy(
        "naive_replay", PlainConvNet(num_classes=10), [gradmix, Watch()]
    )
    for exp in digits_benchmark.train_stream[:3]:
        strategy.train(exp)
    current = {int(c) for c in exp.classes_in_this_experience}
    marked = set(torch.nonzero(gradmix.policy.current).flatten().tolist())
    assert marked == current
    # at the first step of experiences 2 and 3 no pair had evidence yet
    assert seen[1] is False and seen[2] is False
    # every kind has been scored, and the pairs of this experience are fresh
    assert gradmix.policy.kind_seen.all()
    c = sorted(current)
    assert gradmix.policy.fresh[c[0], c[1]] or gradmix.policy.fresh[c[0], c[0]]
