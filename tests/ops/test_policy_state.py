"""GradMix's pair policy driven through several steps of known evidence.

Each step feeds :class:`GradientPairs` a batch of labels, partners and inner
products; a plain-Python recomputation (one dictionary entry per unordered
class pair, one loop over the samples) gives what the score matrix, the
evidence flags, the step counts and the helpful mask must be after it. The
share of rows that ignore the scores (``refresh``) is checked against the
binomial distribution it follows.
"""

from __future__ import annotations

import math

import pytest
import torch

from avalanche_mixplugins.pairing import GradientPairs


class BrutePolicy:
    """The pair-score rules, one pair at a time (no tensors)."""

    def __init__(self, num_classes, momentum, kind_prior=False, current=None):
        self.c = num_classes
        self.m = momentum
        self.kind_prior = kind_prior
        self.current = set(current or ())
        self.score: dict[tuple[int, int], float] = {}
        self.steps: dict[tuple[int, int], int] = {}
        self.fresh: set[tuple[int, int]] = set()
        self.kind_score: dict[int, float] = {}

    @staticmethod
    def key(a, b):
        return (min(a, b), max(a, b))

    def kind(self, pair):
        return sum(int(c in self.current) for c in pair)

    def start_experience(self, current):
        self.current = set(current)
        self.fresh = set()

    def effective(self, pair):
        """(score, has evidence) that decisions read."""
        if (
            self.kind_prior
            and pair not in self.fresh
            and self.kind(pair) in self.kind_score
        ):
            return self.kind_score[self.kind(pair)], True
        if pair in self.score:
            return self.score[pair], True
        return 0.0, False

    def step(self, y, partner, inner, valid):
        values: dict[tuple[int, int], list[float]] = {}
        for i in range(len(y)):
            if valid[i] and math.isfinite(inner[i]):
                values.setdefault(self.key(y[i], y[partner[i]]), []).append(inner[i])
        new = {}
        for pair, vals in values.items():
            mean = sum(vals) / len(vals)
            start, seen = self.effective(pair)
            new[pair] = self.m * start + (1 - self.m) * mean if seen else mean
        if self.kind_prior:
            by_kind: dict[int, list[float]] = {}
            for pair, vals in values.items():
                by_kind.setdefault(self.kind(pair), []).extend(vals)
            for k, vals in by_kind.items():
                mean = sum(vals) / len(vals)
                old = self.kind_score.get(k)
                self.kind_score[k] = (
                    mean if old is None else self.m * old + (1 - self.m) * mean
                )
        for pair, s in new.items():
            self.score[pair] = s
            self.steps[pair] = self.steps.get(pair, 0) + 1
            self.fresh.add(pair)

    def matrices(self):
        s = torch.zeros(self.c, self.c)
        seen = torch.zeros(self.c, self.c, dtype=torch.bool)
        steps = torch.zeros(self.c, self.c)
        for (a, b), v in self.score.items():
            s[a, b] = s[b, a] = v
            seen[a, b] = seen[b, a] = True
            steps[a, b] = steps[b, a] = self.steps[(a, b)]
        return s, seen, steps

    def helpful(self, y, partner, min_evidence=1):
        out = []
        for i in range(len(y)):
            pair = self.key(y[i], y[partner[i]])
            score, seen = self.effective(pair)
            ok = seen and score > 0
            if min_evidence > 1:  # 1: no count needed (the step's own evidence)
                ok = ok and self.steps.get(pair, 0) >= min_evidence
            out.append(ok)
        return torch.tensor(out)


def known_evidence(gen, n, c):
    """A batch of labels, partners, inner products (some NaN) and a valid mask."""
    y = torch.randint(0, c, (n,), generator=gen)
    partner = torch.randint(0, n, (n,), generator=gen)
    inner = torch.randn(n, generator=gen, dtype=torch.float64).float()
    inner[torch.rand(n, generator=gen) < 0.1] = float("nan")
    valid = torch.rand(n, generator=gen) < 0.85
    return y, partner, inner, valid


@pytest.mark.parametrize("kind_prior", [False, True], ids=["own", "kind_prior"])
@pytest.mark.parametrize("momentum", [0.0, 0.7])
def test_scores_seen_steps_and_helpful_follow_a_pair_by_pair_recomputation(
    momentum, kind_prior
):
    c, n = 5, 14
    gen = torch.Generator().manual_seed(11)
    policy = GradientPairs(momentum=momentum, refresh=0.0, kind_prior=kind_prior)
    policy.grow(c)
    brute = BrutePolicy(c, momentum, kind_prior=kind_prior)
    experiences = [[0, 1], [2, 3], [4]]
    for exp, current in enumerate(experiences):
        mask = torch.zeros(c, dtype=torch.bool)
        mask[current] = True
        policy.current = mask
        policy.start_experience()
        brute.start_experience(current)
        for _ in range(4):
            y, partner, inner, valid = known_evidence(gen, n, c)
            sums, counts = policy.batch_pair_sums(y, partner, inner, valid)
            policy.update(sums, counts)
            brute.step(y.tolist(), partner.tolist(), inner.tolist(), valid.tolist())

            s, seen, steps = brute.matrices()
            torch.testing.assert_close(policy.scores, s, rtol=0, atol=1e-5)
            assert torch.equal(policy.seen, seen), exp
            assert torch.equal(policy.steps, steps), exp
            # (i, j) and (j, i) come from the same evidence (sums in another order)
            torch.testing.assert_close(
                policy.scores, policy.scores.t(), rtol=0, atol=1e-6
            )

            y2, partner2, _, _ = known_evidence(gen, n, c)
            for min_evidence in (1, 2):
                policy.min_evidence = min_evidence
                got = policy.helpful(y2, partner2)
                want = brute.helpful(y2.tolist(), partner2.tolist(), min_evidence)
                assert torch.equal(got, want), (exp, min_evidence)
            policy.min_evidence = 1
            # known detrimental: evidence (own or of the kind) and a score <= 0
            blocked = policy.known_detrimental(y2)
            for i in range(n):
                for j in range(n):
                    score, has = brute.effective(brute.key(int(y2[i]), int(y2[j])))
                    assert bool(blocked[i, j]) == (has and score <= 0)


def test_a_step_moves_each_scored_pair_by_one_minus_momentum_of_the_gap():
    """Hand-worked: old score 2, new evidence -1 and -3 (mean -2), m = 0.75:
    the score moves by (1 - m) * (-2 - 2) = -1, to 1."""
    policy = GradientPairs(momentum=0.75, refresh=0.0)
    policy.grow(3)
    y = torch.tensor([0, 1, 2])
    partner = torch.tensor([1, 0, 2])
    ones = torch.ones(3, dtype=torch.bool)
    policy.update(
        *policy.batch_pair_sums(y, partner, torch.tensor([2.0, 2.0, 5.0]), ones)
    )
    assert policy.scores[0, 1] == 2.0 and policy.scores[2, 2] == 5.0  # first: replaced
    policy.update(
        *policy.batch_pair_sums(y, partner, torch.tensor([-1.0, -3.0, 0.0]), ones)
    )
    assert policy.scores[0, 1].item() == pytest.approx(1.0)
    assert policy.scores[1, 0].item() == pytest.approx(1.0)
    assert policy.scores[2, 2].item() == pytest.approx(0.75 * 5.0)
    assert not policy.seen[0, 2] and policy.scores[0, 2] == 0.0


@pytest.mark.parametrize("refresh", [0.1, 0.35])
def test_refresh_share_follows_its_binomial(refresh):
    """Every pair is known detrimental, so with ``fallback="none"`` only the
    rows that ignore the scores get a partner: their number over ``n`` draws is
    Binomial(n, refresh). Bounds at 4.5 standard deviations (fixed seed)."""
    c, n_rows, draws = 4, 50, 40
    policy = GradientPairs(momentum=0.5, refresh=refresh)
    policy.grow(c)
    policy.scores = -torch.ones(c, c)
    policy.seen = torch.ones(c, c, dtype=torch.bool)
    gen = torch.Generator().manual_seed(5)
    y = torch.arange(n_rows) % c
    is_buffer = y < 2
    active = 0
    for _ in range(draws):
        partner, act = policy.select(y, is_buffer, generator=gen)
        active += int(act.sum())
        # a refreshed row still gets an admissible partner (not itself)
        assert bool((partner[act] != torch.arange(n_rows)[act]).all())
    total = n_rows * draws
    sd = math.sqrt(total * refresh * (1 - refresh))
    assert abs(active - total * refresh) <= 4.5 * sd, (active, total * refresh)

    # no refresh: nothing is mixed; refresh 1: every row is
    for share, expected in ((0.0, 0), (1.0, n_rows)):
        policy.refresh = share
        _, act = policy.select(y, is_buffer, generator=gen)
        assert int(act.sum()) == expected


def test_partners_never_form_a_blocked_pair_unless_refreshed():
    """Brute force over the draws: a row whose partner's pair is known
    detrimental was one of the refreshed rows, whose share is ``refresh``."""
    c, n = 4, 40
    policy = GradientPairs(momentum=0.5, refresh=0.2)
    policy.grow(c)
    s = torch.tensor([[1.0, -1.0, 2.0, -0.5]] * c)
    policy.scores = (s + s.t()) / 2
    policy.seen = torch.ones(c, c, dtype=torch.bool)
    gen = torch.Generator().manual_seed(2)
    y = torch.arange(n) % c
    blocked_rows, rows = 0, 0
    for _ in range(30):
        partner, act = policy.select(y, torch.zeros(n, dtype=torch.bool), generator=gen)
        for i in range(n):
            if act[i]:
                rows += 1
                blocked_rows += bool(policy.scores[y[i], y[partner[i]]] <= 0)
    assert rows > 0
    # a refreshed row picks any partner: blocked ones are at most ~refresh
    assert blocked_rows <= 0.2 * rows + 4.5 * math.sqrt(rows * 0.2 * 0.8)
    assert blocked_rows > 0  # the refreshed rows do reach blocked pairs
