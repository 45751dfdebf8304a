"""Properties that state the methods, checked on generated cases (hypothesis).

Each property is a sentence of the method: relabelling the classes permutes
the pair-score matrix the same way; a pair's score is symmetric; ``lam`` lies
in [0, 1] and a CutMix box covers ``1 - lam`` of the image; mixed targets
sum to 1; AUM and APM of a sample depend on its own logits only; the
easy/hard split does not change under a monotone transform of the scores; a
moving average with momentum ``m`` moves by exactly ``1 - m`` of the gap to
the new evidence. The cases are derandomized (the same every run) and few,
so the file stays fast.
"""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from avalanche_mixplugins.mixing import (
    box_masks,
    cutmix_boxes,
    cutmix_inputs,
    mix_targets,
    sample_lambda,
)
from avalanche_mixplugins.pairing import GradientPairs
from ssl_ext.algorithms.softmatch import DistributionAlignment, SoftMatch
from ssl_ext.calibratemix.split import median_split, median_split_masks
from ssl_ext.dynamics import APMTracker, AUMTracker

FAST = settings(max_examples=25, deadline=None, derandomize=True, database=None)

seeds = st.integers(min_value=0, max_value=2**31 - 1)


def evidence(seed, n, c):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=gen)
    partner = torch.randint(0, n, (n,), generator=gen)
    inner = torch.randn(n, generator=gen)
    valid = torch.rand(n, generator=gen) < 0.8
    return y, partner, inner, valid


def run_policy(steps, c, momentum):
    policy = GradientPairs(momentum=momentum, refresh=0.0)
    policy.grow(c)
    for y, partner, inner, valid in steps:
        policy.update(*policy.batch_pair_sums(y, partner, inner, valid))
    return policy


@FAST
@given(
    seed=seeds,
    c=st.integers(2, 6),
    n=st.integers(2, 16),
    n_steps=st.integers(1, 4),
    momentum=st.sampled_from([0.0, 0.5, 0.9]),
    data=st.data(),
)
def test_relabelling_classes_permutes_the_pair_scores(
    seed, c, n, n_steps, momentum, data
):
    perm = torch.tensor(data.draw(st.permutations(range(c))))
    steps = [evidence(seed + k, n, c) for k in range(n_steps)]
    policy = run_policy(steps, c, momentum)
    relabelled = run_policy([(perm[y], p, i, v) for y, p, i, v in steps], c, momentum)
    # class a became perm[a]: entry (perm[a], perm[b]) is the old (a, b)
    idx = perm.view(-1, 1), perm.view(1, -1)
    torch.testing.assert_close(relabelled.scores[idx], policy.scores, rtol=0, atol=1e-6)
    assert torch.equal(relabelled.seen[idx], policy.seen)
    assert torch.equal(relabelled.steps[idx], policy.steps)


@FAST
@given(seed=seeds, c=st.integers(2, 6), n=st.integers(1, 16))
def test_a_pair_and_its_mirror_are_updated_from_the_same_evidence(seed, c, n):
    y, partner, inner, valid = evidence(seed, n, c)
    sums, counts = _sums(c, y, partner, inner, valid)
    assert torch.equal(counts, counts.t())
    torch.testing.assert_close(sums, sums.t(), rtol=0, atol=1e-6)
    # each valid sample is counted once in its (unordered) pair, twice on the diagonal
    for a in range(c):
        for b in range(c):
            rows = valid & (
                ((y == a) & (y[partner] == b)) | ((y == b) & (y[partner] == a))
            )
            factor = 2 if a == b else 1
            assert counts[a, b] == factor * rows.sum()
            torch.testing.assert_close(
                sums[a, b], factor * inner[rows].sum(), rtol=0, atol=1e-5
            )
    policy = run_policy([(y, partner, inner, valid)], c, 0.5)
    torch.testing.assert_close(policy.scores, policy.scores.t(), rtol=0, atol=1e-6)
    assert torch.equal(policy.seen, policy.seen.t())


def _sums(c, y, partner, inner, valid):
    policy = GradientPairs()
    policy.grow(c)
    return policy.batch_pair_sums(y, partner, inner, valid)


@FAST
@given(
    seed=seeds,
    alpha=st.floats(0.05, 8.0),
    n=st.integers(1, 12),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
)
def test_lam_is_a_weight_and_a_cutmix_box_covers_one_minus_lam(seed, alpha, n, h, w):
    gen = torch.Generator().manual_seed(seed)
    lam = sample_lambda(alpha, n, generator=gen)
    assert lam.shape == (n,) and bool(((lam >= 0) & (lam <= 1)).all())
    boxes, lam_adj = cutmix_boxes(lam, h, w, generator=gen)
    area = box_masks(boxes, h, w).float().sum(dim=(1, 2, 3))
    torch.testing.assert_close(lam_adj, 1.0 - area / (h * w), rtol=0, atol=1e-6)
    assert bool(((lam_adj >= 0) & (lam_adj <= 1)).all())
    # the box has the requested sides before clipping: never more area
    assert bool(
        (
            area
            <= torch.round(torch.sqrt(1 - lam) * h)
            * torch.round(torch.sqrt(1 - lam) * w)
            + 1e-6
        ).all()
    )
    # pixels inside the box come from the partner, the others from the sample
    x = torch.randn(n, 2, h, w, generator=gen)
    partner = torch.randint(0, n, (n,), generator=gen)
    gen_a = torch.Generator().manual_seed(seed + 1)
    mixed, lam2 = cutmix_inputs(x, partner, lam, generator=gen_a)
    boxes2, _ = cutmix_boxes(
        lam, h, w, generator=torch.Generator().manual_seed(seed + 1)
    )
    for i in range(n):
        y0, y1, x0, x1 = boxes2[i].tolist()
        expected = x[i].clone()
        expected[:, y0:y1, x0:x1] = x[partner[i], :, y0:y1, x0:x1]
        assert torch.equal(mixed[i], expected)
        kept = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
        assert math.isclose(float(lam2[i]), kept, abs_tol=1e-6)


@FAST
@given(seed=seeds, n=st.integers(1, 12), c=st.integers(1, 7))
def test_mixed_targets_sum_to_one_and_put_lam_on_the_own_label(seed, n, c):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=gen)
    partner = torch.randint(0, n, (n,), generator=gen)
    lam = torch.rand(n, generator=gen)
    t = mix_targets(y, partner, lam, c)
    torch.testing.assert_close(t.sum(dim=1), torch.ones(n), rtol=0, atol=1e-6)
    assert bool((t >= 0).all())
    for i in range(n):
        want = torch.zeros(c)
        want[y[i]] += lam[i]
        want[y[partner[i]]] += 1 - lam[i]
        torch.testing.assert_close(t[i], want, rtol=0, atol=1e-6)


@FAST
@given(seed=seeds, n=st.integers(2, 10), c=st.integers(2, 6), steps=st.integers(1, 3))
def test_aum_and_apm_of_a_sample_depend_on_its_own_logits_only(seed, n, c, steps):
    """Run the trackers on whole batches, and once per sample on its rows
    alone: every sample's AUM and APM (and update count) agree; changing the
    other rows' logits changes nothing for it."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(steps):
        index = torch.randperm(2 * n, generator=gen)[:n]
        logits = torch.randn(n, c, generator=gen) * 3
        labels = torch.randint(0, c, (n,), generator=gen)
        batches.append((logits, labels, index))
    aum, apm = AUMTracker(num_samples=2 * n), APMTracker(num_samples=2 * n)
    for logits, labels, index in batches:
        aum.update(logits, labels, index)
        apm.update(logits, index)
    classes = torch.arange(c)
    for sample in range(2 * n):
        one_aum, one_apm = AUMTracker(num_samples=2 * n), APMTracker(num_samples=2 * n)
        for logits, labels, index in batches:
            rows = index == sample
            noise = torch.randn(logits.shape, generator=gen) * ~rows.view(-1, 1)
            one_aum.update(logits + noise, labels, index)
            one_apm.update(logits + noise, index)
        ids = torch.tensor([sample])
        torch.testing.assert_close(one_aum.value(ids), aum.value(ids))
        for k in classes:
            torch.testing.assert_close(
                one_apm.value(ids, k.view(1)), apm.value(ids, k.view(1))
            )
        assert torch.equal(one_apm.updates(ids), apm.updates(ids))


monotone = st.sampled_from(
    [
        lambda s: 3.0 * s - 7.0,
        lambda s: s**3,
        lambda s: torch.exp(s / 10.0),
        lambda s: torch.atan(s / 20.0),
    ]
)


@FAST
@given(
    ints=st.lists(st.integers(-40, 40), min_size=2, max_size=20),
    f=monotone,
    data=st.data(),
)
def test_easy_hard_split_is_invariant_to_a_monotone_transform(ints, f, data):
    scores = torch.tensor(ints, dtype=torch.float32)
    easy, hard = median_split(scores)
    easy_f, hard_f = median_split(f(scores))
    assert torch.equal(easy, easy_f) and torch.equal(hard, hard_f)
    assert len(hard) == len(ints) // 2 and len(easy) + len(hard) == len(ints)
    # every hard score is <= every easy score
    assert bool(scores[hard].max() <= scores[easy].min()) if len(hard) else True
    decided = torch.tensor(
        data.draw(st.lists(st.booleans(), min_size=len(ints), max_size=len(ints)))
    )
    e, h = median_split_masks(scores, decided)
    e_f, h_f = median_split_masks(f(scores), decided)
    assert torch.equal(e, e_f) and torch.equal(h, h_f)
    assert torch.equal(e | h, decided) and not bool((e & h).any())
    assert int(h.sum()) == int(decided.sum()) // 2


@FAST
@given(
    seed=seeds,
    momentum=st.floats(0.0, 0.99),
    c=st.integers(2, 5),
    n=st.integers(2, 12),
)
def test_moving_averages_move_by_one_minus_momentum_toward_new_evidence(
    seed, momentum, c, n
):
    # the pair scores: a pair with earlier evidence moves by (1 - m) * gap
    first, second = evidence(seed, n, c), evidence(seed + 1, n, c)
    policy = run_policy([first], c, momentum)
    old, old_seen = policy.scores.clone(), policy.seen.clone()
    sums, counts = policy.batch_pair_sums(*second)
    policy.update(sums, counts)
    mean = sums / counts.clamp_min(1)
    has = counts > 0
    both = has & old_seen
    torch.testing.assert_close(
        (policy.scores - old)[both],
        ((1 - momentum) * (mean - old))[both],
        rtol=0,
        atol=1e-5,
    )
    fresh = has & ~old_seen
    torch.testing.assert_close(policy.scores[fresh], mean[fresh], rtol=0, atol=1e-6)
    assert torch.equal(policy.scores[~has], old[~has])

    # distribution alignment's p_model and SoftMatch's mean / variance
    gen = torch.Generator().manual_seed(seed)
    m = min(max(momentum, 0.0), 0.999)
    align = DistributionAlignment(momentum=m)
    probs = [torch.rand(n, c, generator=gen).softmax(dim=1) for _ in range(2)]
    align(probs[0])
    before = align.p_model.clone()
    align(probs[1])
    torch.testing.assert_close(
        align.p_model - before,
        (1 - m) * (probs[1].mean(dim=0) - before),
        rtol=0,
        atol=1e-6,
    )
    sm = SoftMatch(momentum=m, dist_align=False)
    logits = [torch.randn(n, c, generator=gen) for _ in range(2)]
    sm(logits[0])
    mu, var = sm.prob_max_mu.clone(), sm.prob_max_var.clone()
    sm(logits[1])
    maxp = logits[1].softmax(dim=1).amax(dim=1)
    torch.testing.assert_close(
        sm.prob_max_mu - mu, (1 - m) * (maxp.mean() - mu), rtol=0, atol=1e-6
    )
    torch.testing.assert_close(
        sm.prob_max_var - var,
        (1 - m) * (maxp.var(unbiased=True) - var),
        rtol=0,
        atol=1e-6,
    )
