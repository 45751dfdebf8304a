"""GradMix's pair policy reuses what it derives from its state, and only then.

:class:`GradientPairs` keeps the effective scores (kind prior applied) and the
blocked / helpful class-pair matrices until a state tensor they read is
replaced or written in place. After every kind of state change the cached
answers must equal those of a policy built afresh from the same state (its
cache empty), and the effective scores must equal a pair-by-pair reading of
the rules. In a real training step the effective scores are computed at most
once.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from avalanche.core import SupervisedPlugin

from avalanche_mixplugins import GradMixPlugin
from avalanche_mixplugins.operation_pairs import OperationPairs
from avalanche_mixplugins.pairing import GradientPairs
from tests.support.cl import cl_strategy
from tests.support.nets import make_mlp

KWARGS = dict(momentum=0.6, refresh=0.0, kind_prior=True, min_evidence=2)


def rebuilt(policy: GradientPairs) -> GradientPairs:
    """A new policy holding copies of ``policy``'s state (nothing cached)."""
    fresh = GradientPairs(
        pairing=policy.pairing,
        momentum=policy.momentum,
        refresh=policy.refresh,
        fallback=policy.fallback,
        min_evidence=policy.min_evidence,
        kind_prior=policy.kind_prior,
    )
    fresh.load_state_dict(policy.state_dict())
    fresh.current = None if policy.current is None else policy.current.clone()
    fresh.exempt = None if policy.exempt is None else policy.exempt.clone()
    return fresh


def pair_by_pair(policy: GradientPairs) -> tuple[torch.Tensor, torch.Tensor]:
    """The effective scores and evidence, one pair at a time from the rules."""
    c = policy.num_classes
    scores = torch.zeros(c, c)
    seen = torch.zeros(c, c, dtype=torch.bool)
    cur = policy.current
    for a, b in itertools.product(range(c), range(c)):
        own = (float(policy.scores[a, b]), bool(policy.seen[a, b]))
        scores[a, b], seen[a, b] = own
        if not policy.kind_prior or cur is None:
            continue
        kind = sum(int(k < cur.shape[0] and bool(cur[k])) for k in (a, b))
        if not bool(policy.fresh[a, b]) and bool(policy.kind_seen[kind]):
            scores[a, b], seen[a, b] = float(policy.kind_scores[kind]), True
    return scores, seen


def batch(gen, n, c):
    y = torch.randint(0, c, (n,), generator=gen)
    partner = torch.randperm(n, generator=gen)
    inner = torch.randn(n, generator=gen)
    valid = torch.rand(n, generator=gen) < 0.8
    return y, partner, inner, valid


def assert_matches_fresh(policy: GradientPairs, y, partner) -> None:
    got = policy.effective()
    fresh = rebuilt(policy)
    want = fresh.effective()
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    brute = pair_by_pair(policy)
    assert torch.equal(got[0], brute[0]) and torch.equal(got[1], brute[1])
    assert torch.equal(policy.known_detrimental(y), fresh.known_detrimental(y))
    assert torch.equal(policy.helpful(y, partner), fresh.helpful(y, partner))


def feed(policy, gen, n, c, times=1):
    for _ in range(times):
        y, partner, inner, valid = batch(gen, n, c)
        policy.update(*policy.batch_pair_sums(y, partner, inner, valid))


def state_changes():
    """``(name, change)``: each change of a policy's state, with random data."""

    def set_current(p, g):
        m = torch.zeros(p.num_classes, dtype=torch.bool)
        m[torch.randint(0, p.num_classes, (2,), generator=g)] = True
        p.current = m

    def set_exempt(p, g):
        p.exempt = torch.rand(p.num_classes, generator=g) < 0.5

    def load(p, g):
        other = GradientPairs(**KWARGS)
        other.grow(p.num_classes)
        other.current = p.current
        feed(other, g, 24, p.num_classes, times=3)
        p.load_state_dict(other.state_dict())

    def write_in_place(name, value):
        def change(p, g):
            t = getattr(p, name)
            t[torch.randint(0, t.shape[0], (1,), generator=g)] = value

        return change

    def flip_current_in_place(p, g):
        p.current[0] = not bool(p.current[0])

    return [
        ("update", lambda p, g: feed(p, g, 24, p.num_classes)),
        ("start_experience", lambda p, g: p.start_experience()),
        ("kind scores in place", lambda p, g: p.kind_scores.sub_(5.0)),
        ("kind seen in place", lambda p, g: p.kind_seen.logical_not_()),
        ("grow", lambda p, g: p.grow(p.num_classes + 1)),
        ("load_state_dict", load),
        ("assign current", set_current),
        ("current in place", flip_current_in_place),
        ("assign exempt", set_exempt),
        ("exempt in place", write_in_place("exempt", True)),
        ("exempt None", lambda p, g: setattr(p, "exempt", None)),
        ("assign scores", lambda p, g: setattr(p, "scores", -p.scores)),
        ("scores in place", write_in_place("scores", -3.0)),
        ("seen in place", write_in_place("seen", True)),
        ("fresh in place", write_in_place("fresh", False)),
        ("assign fresh", lambda p, g: setattr(p, "fresh", ~p.fresh)),
        ("steps in place", write_in_place("steps", 0.0)),
        ("kind_prior off", lambda p, g: setattr(p, "kind_prior", False)),
        ("kind_prior on", lambda p, g: setattr(p, "kind_prior", True)),
        ("min_evidence", lambda p, g: setattr(p, "min_evidence", 1)),
        ("fallback", lambda p, g: setattr(p, "fallback", "same_class")),
        ("current None", lambda p, g: setattr(p, "current", None)),
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cached_answers_equal_a_fresh_computation_after_every_state_change(seed):
    gen = torch.Generator().manual_seed(seed)
    c, n = 5, 24
    policy = GradientPairs(**KWARGS)
    policy.grow(c)
    policy.current = torch.tensor([False, False, True, True, False])
    feed(policy, gen, n, c, times=3)
    for round_ in range(2):  # the changes in order, twice, on one policy
        for name, change in state_changes():
            y, partner, *_ = batch(gen, n, policy.num_classes)
            assert_matches_fresh(policy, y, partner)  # the cache is warm now
            change(policy, gen)
            y, partner, *_ = batch(gen, n, policy.num_classes)
            try:
                assert_matches_fresh(policy, y, partner)
            except AssertionError as err:
                raise AssertionError(f"after {name!r} (round {round_})") from err


def test_answers_are_reused_while_the_state_is_unchanged():
    policy = GradientPairs(**KWARGS)
    policy.grow(4)
    policy.current = torch.tensor([False, True, True, False])
    feed(policy, torch.Generator().manual_seed(3), 16, 4, times=2)
    first = policy.effective()
    again = policy.effective()
    assert first[0] is again[0] and first[1] is again[1]
    # handing over an equal but new tensor is a change (it may differ later)
    policy.current = policy.current.clone()
    assert policy.effective()[0] is not first[0]


def test_operation_pairs_forward_current_and_exempt_to_fresh_answers():
    gen = torch.Generator().manual_seed(4)
    c, n = 4, 20
    policy = OperationPairs(**KWARGS)
    policy.grow(c)
    policy.current = torch.tensor([False, False, True, True])
    for _ in range(3):
        y, partner, inner, valid = batch(gen, n, c)
        op = torch.randint(0, 2, (n,), generator=gen)
        sums, counts = policy.batch_pair_sums(y, partner, inner, valid, operation=op)
        policy.update(sums, counts)
    y, partner, *_ = batch(gen, n, c)
    for p in policy.policies:
        assert_matches_fresh(p, y, partner)
    policy.current = torch.tensor([True, True, False, False])
    policy.exempt = torch.tensor([True, False, False, True])
    for p in policy.policies:
        assert p.current is policy.current and p.exempt is policy.exempt
        assert_matches_fresh(p, y, partner)


def test_a_gradmix_step_computes_the_effective_scores_at_most_once(digits_benchmark):
    plugin = GradMixPlugin(seed=0)
    policy = plugin.policy
    calls = {"n": 0}
    compute = policy._compute_effective

    def counted():
        calls["n"] += 1
        return compute()

    policy._compute_effective = counted
    per_step = []

    class Count(SupervisedPlugin):
        def before_training_iteration(self, strategy, **kwargs):
            calls["n"] = 0

        def after_training_iteration(self, strategy, **kwargs):
            if plugin.last_batch is not None and plugin._has_previous:
                per_step.append(calls["n"])

    strategy = cl_strategy("naive_replay", make_mlp(), [plugin, Count()])
    for exp in digits_benchmark.train_stream[:2]:
        strategy.train(exp)
    assert len(per_step) >= 5
    # the first step of an experience builds the policy's class masks
    assert max(per_step[2:]) <= 1, per_step
    assert sum(per_step) >= len(per_step) - 2  # it is computed, not skipped
