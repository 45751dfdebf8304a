"""Pair-selection policies: which samples of a batch are mixed together.

A policy sees the labels of a training batch and which of its samples are
previous-task (buffer) samples, and returns for every sample a partner index
and whether the sample takes part in mixing. The choice is batched (one
exponential race over an ``N x N`` weight matrix, see :func:`draw_partners`),
with no Python loop over samples and no host-device synchronisation.

:class:`RandomPairs` is the pairing of Mixup and CutMix. :class:`GradientPairs`
is the class-pair criterion of GradMix:

    Kim, Hwang, Whang. "GradMix: Gradient-based Selective Mixup for Robust Data
    Augmentation in Class-Incremental Learning". arXiv:2505.08528 (KDD 2026).
    https://arxiv.org/abs/2505.08528

It keeps a ``C x C`` matrix of class-pair scores (the mean inner product
between the gradient of mixed samples of that class pair and the mean
gradient of the buffer samples, smoothed across steps) and lets only pairs
with a positive score contribute to the mixed loss. Nothing here imports
Avalanche.
"""

from __future__ import annotations

import torch
from torch import Tensor

from avalanche_mixplugins._constants import arange, distinct_pairs, scalar
from avalanche_mixplugins.validation import check_one_of, check_positive_int

PAIRINGS = ("all", "buffer_current", "with_buffer", "current")
#: pairings under which nothing can be mixed before a buffer exists
BUFFER_PAIRINGS = ("buffer_current", "with_buffer")
FALLBACKS = ("none", "same_class")
NO_BUFFER_MODES = ("mixup", "none")


def check_pairing(pairing: str) -> str:
    """Return ``pairing`` if it is one of :data:`PAIRINGS`."""
    return check_one_of("pairing", pairing, PAIRINGS)


def allowed_pairs(is_buffer: Tensor, pairing: str) -> Tensor:
    """Boolean ``(N, N)`` matrix: may sample ``i`` be mixed with sample ``j``.

    :param is_buffer: bool ``(N,)``, true for previous-task (buffer) samples.
    :param pairing: ``"all"`` (any two distinct samples), ``"buffer_current"``
        (one buffer and one current sample), ``"with_buffer"`` (two distinct
        samples, at least one from the buffer: every pair but two current
        samples) or ``"current"`` (two current samples; buffer samples are
        never mixed).
    """
    check_pairing(pairing)
    n = is_buffer.shape[0]
    distinct = ~torch.eye(n, dtype=torch.bool, device=is_buffer.device)
    if pairing == "all":
        return distinct
    if pairing == "buffer_current":
        return is_buffer.view(-1, 1) != is_buffer.view(1, -1)
    if pairing == "with_buffer":
        return distinct & (is_buffer.view(-1, 1) | is_buffer.view(1, -1))
    cur = ~is_buffer
    return distinct & cur.view(-1, 1) & cur.view(1, -1)


def candidate_count(is_buffer: Tensor, pairing: str) -> Tensor:
    """How many samples random-pair Mixup would mix under ``pairing``, at least 1.

    Every sample with an admissible partner (:func:`allowed_pairs`), whatever
    a policy's scores say: the denominator of GradMix's mixed loss
    (``loss_norm="candidates"``). A 0-dim float tensor on ``is_buffer``'s
    device, with no host sync.
    """
    if pairing == "all":
        # any two distinct samples: every sample when there are two or
        # more, and 1 otherwise
        n = is_buffer.shape[0]
        return torch.full((), float(max(n, 1)), device=is_buffer.device)
    allowed = allowed_pairs(is_buffer, pairing)
    return allowed.any(dim=1).float().sum().clamp_min(1.0)


def same_class_partners(y: Tensor) -> Tensor:
    """Bool ``(N, N)``: sample ``j`` is another sample of ``i``'s class.

    The partners of ``fallback="same_class"`` for a row left without one.
    """
    n = y.shape[0]
    return (y.view(-1, 1) == y.view(1, -1)) & ~torch.eye(
        n, dtype=torch.bool, device=y.device
    )


def draw_partners(
    weights: Tensor, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Draw one partner per row of a non-negative ``(N, N)`` weight matrix.

    Row ``i`` gets partner ``j`` with probability ``w_ij / sum_k w_ik``, by an
    exponential race on the weights' device: ``argmax_j w_ij / E_ij`` with
    ``E_ij ~ Exp(1)`` (the Gumbel-max trick in another form; for a 0/1 matrix
    a uniform draw among the admissible partners). Nothing is moved to the
    host and the output shape does not depend on the weights.

    :param generator: a ``torch.Generator`` on the weights' device (one on
        another device draws there and the noise is copied).
    :return: ``(partner, active)``: long ``(N,)`` partner indices and a bool
        ``(N,)`` mask of rows that had at least one admissible partner (rows
        without one get themselves as partner and ``active = False``).
    """
    n = weights.shape[0]
    weights = weights.float()
    active = weights.sum(dim=1) > 0
    eye = torch.eye(n, device=weights.device, dtype=weights.dtype)
    safe = torch.where(active.view(-1, 1), weights, eye)
    where = generator.device if generator is not None else safe.device
    race = torch.empty(n, n, device=where).exponential_(generator=generator)
    race = race.to(safe.device)
    key = torch.where(safe > 0, safe / race, torch.full_like(safe, -1.0))
    return key.argmax(dim=1), active


def _draw_admissible(
    allowed: Tensor, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """:func:`draw_partners` for a bool ``(N, N)`` matrix, in fewer operations.

    The same noise is drawn (one ``N x N`` exponential race) and the same
    partners come out: for a 0/1 matrix ``w_ij / E_ij`` is ``1 / E_ij`` where
    ``w_ij = 1``, and a row without an admissible partner gets itself.
    """
    n = allowed.shape[0]
    device = allowed.device
    active = allowed.any(dim=1)
    where = generator.device if generator is not None else device
    race = torch.empty(n, n, device=where).exponential_(generator=generator)
    race = race.to(device)
    key = torch.where(allowed, race.reciprocal_(), scalar(-1.0, race.dtype, device))
    partner = torch.where(active, key.argmax(dim=1), arange(n, device))
    return partner, active


class PairPolicy:
    """Base class of pair policies.

    :meth:`select` chooses partners before the mixed forward; :meth:`weigh`
    may refine, after the mixed forward, which mixed samples count in the loss
    (the default keeps every active sample).

    :param pairing: which samples may be paired, see :func:`allowed_pairs`.
    """

    def __init__(self, *, pairing: str = "all"):
        self.pairing = check_pairing(pairing)

    def select(
        self,
        y: Tensor,
        is_buffer: Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Return ``(partner, active)`` for a batch with labels ``y``."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state


class RandomPairs(PairPolicy):
    """Uniformly random partners among the admissible ones (Mixup, CutMix)."""

    def select(self, y, is_buffer, *, generator=None):
        allowed = allowed_pairs(is_buffer, self.pairing)
        return draw_partners(allowed, generator=generator)


class GradientPairs(PairPolicy):
    """GradMix's class-pair criterion.

    The policy holds ``scores``, a symmetric ``C x C`` matrix over the classes
    seen so far (it grows as classes arrive), and ``seen``, which pairs have
    received evidence. Each step:

    1. :meth:`select` draws partners among admissible samples whose class pair
       is not known to be detrimental (score > 0, or never scored). A fraction
       ``refresh`` of the rows ignores the scores, so that every pair keeps
       getting fresh evidence. A row left without partner is not mixed, or,
       with ``fallback="same_class"``, is mixed within its own class.
    2. The caller computes one inner product per mixed sample (its loss
       gradient with the buffer's mean gradient, see
       :mod:`avalanche_mixplugins.gradients`) and calls :meth:`update`, which
       averages them per class pair and smooths the matrix:
       ``S <- momentum * S + (1 - momentum) * batch_mean`` (the first evidence
       of a pair replaces its score).
    3. :meth:`helpful` says which mixed samples belong to a pair whose updated
       score is positive: only those count in the mixed loss.

    :param pairing: which samples may be paired, see :func:`allowed_pairs`.
    :param momentum: smoothing of the score matrix across steps, in [0, 1).
        ``0`` keeps only the latest batch's evidence.
    :param refresh: fraction of rows whose partner is drawn ignoring the
        scores, in [0, 1].
    :param fallback: ``"none"`` (a sample with no helpful partner is not
        mixed) or ``"same_class"`` (it is mixed with a sample of its class).
    :param min_evidence: steps of evidence a pair needs before a positive
        score counts as helpful (``1``: the step's own evidence suffices).
    :param kind_prior: a pair with no evidence yet in the current experience
        takes the smoothed score of its **kind** (two previous classes, a
        previous and a current class, two current classes; kinds are relative
        to :attr:`current`), and its first evidence is smoothed from there.
        New classes then start from what pairs of their kind did before,
        instead of being mixed until their own evidence arrives, and a pair
        whose kind changed (two current classes become two previous ones) is
        not judged on its old score. Off (this class's default; GradMixPlugin
        turns it on): a pair never scored is admitted on its first evidence
        and a scored pair keeps its score.
    """

    def __init__(
        self,
        *,
        pairing: str = "all",
        momentum: float = 0.9,
        refresh: float = 0.1,
        fallback: str = "none",
        min_evidence: int = 1,
        kind_prior: bool = False,
    ):
        super().__init__(pairing=pairing)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        if not 0.0 <= float(refresh) <= 1.0:
            raise ValueError(f"refresh must lie in [0, 1], got {refresh}")
        check_one_of("fallback", fallback, FALLBACKS)
        self.momentum = float(momentum)
        self.refresh = float(refresh)
        self.fallback = fallback
        self.min_evidence = check_positive_int("min_evidence", min_evidence)
        self.scores = torch.zeros(0, 0)
        self.seen = torch.zeros(0, 0, dtype=torch.bool)
        self.steps = torch.zeros(0, 0)
        """``C x C``: number of steps in which each pair received evidence."""
        self.exempt: Tensor | None = None
        """Optional bool ``(C,)``: pairs of two such classes are mixed whatever
        their score (they still receive evidence)."""
        self.kind_prior = bool(kind_prior)
        self.current: Tensor | None = None
        """Optional bool ``(C,)``: the current experience's classes (pair kinds)."""
        self.fresh = torch.zeros(0, 0, dtype=torch.bool)
        """``C x C``: pairs that received evidence in the current experience."""
        self.kind_scores = torch.zeros(3)
        self.kind_seen = torch.zeros(3, dtype=torch.bool)
        self._cache: dict[str, tuple[tuple, object]] = {}

    # -- derived matrices, computed once per state -------------------------------
    def _state_key(self, names: tuple[str, ...], extra: tuple = ()) -> tuple:
        """What the named attributes are now: each tensor's identity and its
        in-place version counter, so that any assignment or in-place write
        (``update``, ``grow``, ``load_state_dict``, a test setting a score)
        changes the key. Inference tensors have no version counter: a fresh
        object then makes the key differ from every earlier one."""
        key = [self.kind_prior, self.min_evidence, self.fallback, *extra]
        for name in names:
            t = getattr(self, name)
            if t is None:
                key.append(None)
            elif t.is_inference():
                key.append(object())
            else:
                key.append((t, t._version))
        return tuple(key)

    @staticmethod
    def _state_key_of(tensors: tuple[Tensor, ...]) -> tuple:
        """The key of :meth:`_state_key` for tensors given directly."""
        return tuple(
            (t, t._version) if not t.is_inference() else object() for t in tensors
        )

    def _cached(self, what: str, names: tuple[str, ...], compute, extra: tuple = ()):
        """``compute()``, reused while the attributes in ``names`` (and the
        values in ``extra``) are unchanged."""
        key = self._state_key(names, extra)
        hit = self._cache.get(what)
        if hit is not None and _same_key(hit[0], key):
            return hit[1]
        value = compute()
        self._cache[what] = (key, value)
        return value

    # -- state -------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.scores.shape[0]

    def grow(self, num_classes: int, device: torch.device | str | None = None) -> None:
        """Extend the matrices to ``num_classes`` (new pairs start unseen)."""
        device = self.scores.device if device is None else torch.device(device)
        old = self.num_classes
        if num_classes > old:
            scores = torch.zeros(num_classes, num_classes, device=device)
            seen = torch.zeros(
                num_classes, num_classes, dtype=torch.bool, device=device
            )
            steps = torch.zeros(num_classes, num_classes, device=device)
            fresh = torch.zeros_like(seen)
            scores[:old, :old] = self.scores.to(device)
            seen[:old, :old] = self.seen.to(device)
            steps[:old, :old] = self.steps.to(device)
            if self.fresh.shape[0] == old:
                fresh[:old, :old] = self.fresh.to(device)
            self.scores, self.seen, self.steps = scores, seen, steps
            self.fresh = fresh
        elif self.scores.device != device:
            self.scores, self.seen = self.scores.to(device), self.seen.to(device)
            self.steps, self.fresh = self.steps.to(device), self.fresh.to(device)
        self.kind_scores = self.kind_scores.to(device)
        self.kind_seen = self.kind_seen.to(device)

    def start_experience(self) -> None:
        """Forget which pairs have evidence in the current experience."""
        self.fresh = torch.zeros_like(self.seen)

    _EFFECTIVE_STATE = (
        "scores",
        "seen",
        "fresh",
        "kind_scores",
        "kind_seen",
        "current",
    )

    def _kinds(self) -> Tensor | None:
        """``C x C`` long: number of current classes in each pair (0, 1 or 2)."""
        if not self.kind_prior or self.current is None:
            return None
        extra = (self.num_classes, self.scores.device)
        return self._cached("kinds", ("current",), self._compute_kinds, extra)

    def _compute_kinds(self) -> Tensor:
        c = self.num_classes
        cur = torch.zeros(c, dtype=torch.long, device=self.scores.device)
        k = min(c, self.current.shape[0])
        cur[:k] = self.current[:k].to(self.scores.device).long()
        return cur.view(-1, 1) + cur.view(1, -1)

    def effective(self) -> tuple[Tensor, Tensor]:
        """The ``C x C`` scores and evidence mask that decisions use.

        With ``kind_prior``, a pair with no evidence in the current experience
        reads its kind's score; otherwise these are :attr:`scores` and
        :attr:`seen`.

        The result is computed once and reused until one of the state tensors
        it reads (scores, seen, fresh, kind scores, :attr:`current`) is
        replaced or written in place.
        """
        return self._cached("effective", self._EFFECTIVE_STATE, self._compute_effective)

    def _compute_effective(self) -> tuple[Tensor, Tensor]:
        kinds = self._kinds()
        if kinds is None:
            return self.scores, self.seen
        use_prior = ~self.fresh & self.kind_seen[kinds]
        scores = torch.where(use_prior, self.kind_scores[kinds], self.scores)
        return scores, self.seen | use_prior

    def state_dict(self) -> dict:
        return {
            "scores": self.scores.detach().cpu(),
            "seen": self.seen.cpu(),
            "steps": self.steps.detach().cpu(),
            "fresh": self.fresh.cpu(),
            "kind_scores": self.kind_scores.detach().cpu(),
            "kind_seen": self.kind_seen.cpu(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.scores = state["scores"].clone().float()
        self.seen = state["seen"].clone().bool()
        # states saved before the step counts existed: one step per seen pair
        self.steps = state.get("steps", self.seen.float()).clone().float()
        self.fresh = state.get("fresh", torch.zeros_like(self.seen)).clone().bool()
        self.kind_scores = state.get("kind_scores", torch.zeros(3)).clone().float()
        self.kind_seen = state.get("kind_seen", torch.zeros(3, dtype=torch.bool))
        self.kind_seen = self.kind_seen.clone().bool()

    # -- steps -------------------------------------------------------------
    def _exempt_classes_pairs(self) -> Tensor | None:
        """``C x C`` bool (or ``None``): both classes of the pair are exempt."""
        if self.exempt is None:
            return None
        ex = self.exempt.to(self.scores.device)
        return ex.view(-1, 1) & ex.view(1, -1)

    def _blocked_classes(self) -> Tensor:
        """``C' x C'`` bool: the class pair is known to be detrimental (seen, score
        <= 0, not exempt); ``C'`` covers :attr:`exempt` when it is longer."""
        return self._blocked_admitted()[0]

    def _blocked_admitted(self) -> tuple[Tensor, Tensor]:
        """:meth:`_blocked_classes` and its negation (the pairs a draw may
        take), computed once per state."""

        def compute():
            scores, seen = self.effective()
            blocked = seen & (scores <= 0)
            exempt = self._exempt_classes_pairs()
            if exempt is not None:
                blocked, exempt = _pad_common(blocked, exempt)
                blocked = blocked & ~exempt
            return blocked, ~blocked

        return self._cached("blocked", (*self._EFFECTIVE_STATE, "exempt"), compute)

    def _positive_classes(self) -> Tensor:
        """``C' x C'`` bool: the class pair counts as helpful (seen, score > 0,
        enough evidence, or exempt)."""

        def compute():
            scores, seen = self.effective()
            positive = seen & (scores > 0)
            if self.min_evidence > 1:
                positive = positive & (self.steps >= self.min_evidence)
            exempt = self._exempt_classes_pairs()
            if exempt is None:
                return positive
            positive, exempt = _pad_common(positive, exempt)
            return positive | exempt

        return self._cached(
            "positive", (*self._EFFECTIVE_STATE, "steps", "exempt"), compute
        )

    def known_detrimental(self, y: Tensor) -> Tensor:
        """``(N, N)`` bool: the class pair of ``(i, j)`` has a score <= 0."""
        return self._blocked_classes()[y.view(-1, 1), y.view(1, -1)]

    def select(self, y, is_buffer, *, generator=None):
        if self.pairing == "all":
            allowed = distinct_pairs(y.shape[0], y.device)
        else:
            allowed = allowed_pairs(is_buffer, self.pairing)
        # admissible: the class pair is not known to be detrimental, or the
        # row explores (``allowed & ~(blocked & ~explore)``)
        admitted = self._blocked_admitted()[1]
        ok = admitted[y][:, y]
        if self.refresh > 0:
            where = generator.device if generator is not None else y.device
            u = torch.rand(y.shape[0], generator=generator, device=where)
            explore = (u.to(y.device) < self.refresh).view(-1, 1)
            ok = ok | explore
        weights = allowed & ok
        if self.fallback == "same_class":
            no_partner = ~weights.any(dim=1, keepdim=True)
            weights = torch.where(no_partner, same_class_partners(y), weights)
        return _draw_admissible(weights, generator=generator)

    def batch_pair_sums(
        self,
        y: Tensor,
        partner: Tensor,
        inner: Tensor,
        valid: Tensor,
        operation: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Sum and count of ``inner`` per unordered class pair (``C x C``, symmetric).

        ``operation`` is ignored: one score matrix serves every operation (see
        :class:`~avalanche_mixplugins.operation_pairs.OperationPairs`).
        """
        del operation
        c = self.num_classes
        a, b = y, self._partner_labels(y, partner)
        if inner.requires_grad:
            inner = inner.detach()
        # never write NaN or inf into scores (|x| < inf: torch.isfinite in
        # fewer operations); a left-out sample adds 0 (a sum that starts at
        # +0 reads the same whether +0 or -0 is added)
        valid = valid & (inner.abs() < float("inf"))
        w = valid.float()
        val = inner.float()
        val = torch.where(valid, val, scalar(0.0, val.dtype, val.device))
        sums = torch.zeros(c * c, device=inner.device)
        counts = torch.zeros(c * c, device=inner.device)
        for idx in (a * c + b, b * c + a):
            sums.index_add_(0, idx, val)
            counts.index_add_(0, idx, w)
        return sums.view(c, c), counts.view(c, c)

    def _partner_labels(self, y: Tensor, partner: Tensor) -> Tensor:
        """``y[partner]``, reused while ``y`` and ``partner`` are the same
        tensors, unchanged (:meth:`batch_pair_sums` and :meth:`helpful` of
        one step read it both)."""
        key = self._state_key_of((y, partner))
        hit = self._cache.get("partner_labels")
        if hit is not None and _same_key(hit[0], key):
            return hit[1]
        b = y[partner]
        self._cache["partner_labels"] = (key, b)
        return b

    def update(self, sums: Tensor, counts: Tensor) -> None:
        """Fold a batch's per-pair sums and counts into the smoothed scores."""
        has = counts > 0
        mean = sums / counts.clamp_min(1.0)
        start, seen = self.effective()
        smoothed = self.momentum * start + (1.0 - self.momentum) * mean
        new = torch.where(seen, smoothed, mean)
        kinds = self._kinds()
        if kinds is not None:
            self._update_kinds(kinds, sums, counts)
        self.scores = torch.where(has, new, self.scores)
        self.seen = self.seen | has
        self.fresh = self.fresh.to(has.device) | has
        self.steps = self.steps.to(has.device) + has  # bool adds as 0.0 / 1.0

    def _update_kinds(self, kinds: Tensor, sums: Tensor, counts: Tensor) -> None:
        """Smooth each kind's score with the step's mean over its pairs."""
        k_sums = torch.zeros(3, device=sums.device).index_add_(
            0, kinds.flatten(), sums.flatten()
        )
        k_counts = torch.zeros(3, device=sums.device).index_add_(
            0, kinds.flatten(), counts.flatten()
        )
        has = k_counts > 0
        mean = k_sums / k_counts.clamp_min(1.0)
        smoothed = self.momentum * self.kind_scores + (1.0 - self.momentum) * mean
        new = torch.where(self.kind_seen, smoothed, mean)
        self.kind_scores = torch.where(has, new, self.kind_scores)
        self.kind_seen = self.kind_seen | has

    def helpful(
        self, y: Tensor, partner: Tensor, operation: Tensor | None = None
    ) -> Tensor:
        """Bool ``(N,)``: the class pair of each mixed sample has a positive score.

        ``operation`` is ignored (one score matrix for every operation).
        """
        del operation
        b = self._partner_labels(y, partner)
        positive = self._positive_classes()[y, b]
        if self.fallback == "same_class":
            return positive | (y == b)
        return positive

    def helpful_pairs(self) -> list[tuple[int, int, float]]:
        """Class pairs ``(a, b, score)`` with ``a <= b`` and a positive score."""
        return helpful_class_pairs(self.scores, self.seen)

    def helpful_fraction(self) -> float:
        """Fraction of the scored class pairs (``a <= b``) that are helpful."""
        return helpful_pair_fraction(self.scores, self.seen)


def helpful_class_pairs(scores: Tensor, seen: Tensor) -> list[tuple[int, int, float]]:
    """Class pairs ``(a, b, score)`` with ``a <= b``, scored (``seen``) and
    with a positive score, read on the host (for inspection, not the step).

    :param scores: ``C x C`` pair scores.
    :param seen: bool ``C x C``, pairs that have a score.
    """
    s = scores.detach().cpu()
    idx = torch.nonzero(torch.triu(seen.cpu() & (s > 0)), as_tuple=False)
    return [(int(i), int(j), float(s[i, j])) for i, j in idx]


def helpful_pair_fraction(scores: Tensor, seen: Tensor) -> float:
    """Fraction of the scored class pairs (``a <= b``) with a positive score;
    ``nan`` when none is scored yet.

    :param scores: ``C x C`` pair scores.
    :param seen: bool ``C x C``, pairs that have a score.
    """
    seen = torch.triu(seen.cpu())
    n = int(seen.sum())
    if n == 0:
        return float("nan")
    return float((seen & (scores.detach().cpu() > 0)).sum()) / n


def _same_key(a: tuple, b: tuple) -> bool:
    """Two state keys (see ``GradientPairs._state_key``) describe the same state."""
    if len(a) != len(b):
        return False
    for u, v in zip(a, b):
        if isinstance(u, tuple) and isinstance(v, tuple):
            if u[0] is not v[0] or u[1] != v[1]:
                return False
        elif u is not v and u != v:
            return False
    return True


def _pad_common(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Two square bool matrices, zero-padded to the larger size."""
    n = max(a.shape[0], b.shape[0])

    def pad(t):
        if t.shape[0] == n:
            return t
        out = torch.zeros(n, n, dtype=t.dtype, device=t.device)
        out[: t.shape[0], : t.shape[0]] = t
        return out

    return pad(a), pad(b)


__all__ = [
    "FALLBACKS",
    "GradientPairs",
    "NO_BUFFER_MODES",
    "PAIRINGS",
    "PairPolicy",
    "RandomPairs",
    "allowed_pairs",
    "candidate_count",
    "check_pairing",
    "draw_partners",
    "helpful_class_pairs",
    "helpful_pair_fraction",
    "same_class_partners",
]
