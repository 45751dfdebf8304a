"""GradMix's criterion over (class pair, mixing operation).

The inner product between a mixed sample's loss gradient and the buffer's
mean gradient does not depend on how the sample was mixed, so the mixing
operation can be scored like the class pair. :class:`OperationPairs` keeps
one :class:`~avalanche_mixplugins.pairing.GradientPairs` score matrix per
operation (Mixup and CutMix, :data:`~avalanche_mixplugins.mixing.OPERATIONS`)
and draws each sample's partner **and** operation together, uniformly among
the (partner, operation) combinations not known to be detrimental. Where
one operation's pairs turn out detrimental and the other's do not, the
draw moves to the other operation; where both are helpful, the two are used
alike (as timm's Mixup/CutMix switch with probability 0.5 does).

This is a project decision where the paper could not be read (see the
package's ``docs/gradmix.md``, "The mixing operation"):

    Kim, Hwang, Whang. "GradMix: Gradient-based Selective Mixup for Robust Data
    Augmentation in Class-Incremental Learning". arXiv:2505.08528 (KDD 2026).
    https://arxiv.org/abs/2505.08528

Nothing here imports Avalanche.
"""

from __future__ import annotations

import torch
from torch import Tensor

from avalanche_mixplugins.mixing import OPERATIONS
from avalanche_mixplugins.pairing import (
    GradientPairs,
    PairPolicy,
    allowed_pairs,
    helpful_class_pairs,
    helpful_pair_fraction,
    same_class_partners,
)


def uniform_like(
    shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None
) -> Tensor:
    """Uniform ``[0, 1)`` draws of ``shape`` on ``device`` from ``generator``."""
    if generator is not None and generator.device != torch.device(device):
        return torch.rand(shape, generator=generator, device=generator.device).to(
            device, non_blocking=True
        )
    return torch.rand(shape, generator=generator, device=device)


def draw_partner_operation(
    weights: Tensor, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Draw one (partner, operation) per row of a ``(K, N, N)`` admissibility tensor.

    Row ``i`` takes a uniformly random entry among the true ``weights[k, i, j]``
    over every operation ``k`` and partner ``j``: random keys, masked, and an
    ``argmax`` on the tensors' device (no host synchronisation).

    :return: ``(partner, active, operation)``: long ``(N,)`` partners, bool
        ``(N,)`` rows that had an admissible entry (the others get themselves
        as partner, operation 0 and ``active = False``) and long ``(N,)``
        operation indices.
    """
    k, n, _ = weights.shape
    flat = weights.permute(1, 0, 2).reshape(n, k * n).bool()
    keys = uniform_like((n, k * n), flat.device, generator)
    keys = torch.where(flat, keys, torch.full_like(keys, -1.0))
    idx = keys.argmax(dim=1)
    active = flat.any(dim=1)
    own = torch.arange(n, device=flat.device)
    partner = torch.where(active, idx % n, own)
    operation = torch.where(active, idx // n, torch.zeros_like(idx))
    return partner, active, operation


class OperationPairs(PairPolicy):
    """Class-pair scores per mixing operation; partner and operation drawn together.

    Holds one :class:`~avalanche_mixplugins.pairing.GradientPairs` per
    operation in ``operations`` (same arguments for each). Each step:

    1. :meth:`select` builds, for every operation, the ``N x N`` matrix of
       admissible partners whose class pair is not known to be detrimental
       *under that operation* (a fraction ``refresh`` of the rows ignores the
       scores) and draws each row's (partner, operation) uniformly among them;
    2. :meth:`batch_pair_sums` splits the step's inner products by operation,
       and :meth:`update` folds each operation's evidence into its own matrix;
    3. :meth:`helpful` reads each sample's pair under its own operation.

    :param operations: names in :data:`~avalanche_mixplugins.mixing.OPERATIONS`
        (the order of the operation indices).
    :param kwargs: the keyword arguments of
        :class:`~avalanche_mixplugins.pairing.GradientPairs` (``pairing``,
        ``momentum``, ``refresh``, ``fallback``, ``min_evidence``,
        ``kind_prior``).
    """

    def __init__(self, *, operations: tuple[str, ...] = OPERATIONS, **kwargs):
        super().__init__(pairing=kwargs.get("pairing", "all"))
        operations = tuple(operations)
        if operations != OPERATIONS:
            raise ValueError(
                f"operations must be {OPERATIONS} (the order of the operation "
                f"indices), got {operations!r}"
            )
        self.operations = operations
        self.policies = [GradientPairs(**kwargs) for _ in operations]

    # -- shared settings, forwarded to every operation's policy ----------------
    @property
    def refresh(self) -> float:
        return self.policies[0].refresh

    @property
    def fallback(self) -> str:
        return self.policies[0].fallback

    @property
    def exempt(self) -> Tensor | None:
        return self.policies[0].exempt

    @exempt.setter
    def exempt(self, value: Tensor | None) -> None:
        for p in self.policies:
            p.exempt = value

    @property
    def current(self) -> Tensor | None:
        return self.policies[0].current

    @current.setter
    def current(self, value: Tensor | None) -> None:
        for p in self.policies:
            p.current = value

    @property
    def num_classes(self) -> int:
        return self.policies[0].num_classes

    def grow(self, num_classes: int, device: torch.device | str | None = None) -> None:
        for p in self.policies:
            p.grow(num_classes, device=device)

    def start_experience(self) -> None:
        for p in self.policies:
            p.start_experience()

    # -- inspection: a pair counts as helpful when some operation makes it so ---
    @property
    def scores(self) -> Tensor:
        """``C x C``: each pair's best score over the operations that scored it."""
        stacked = torch.stack([p.scores for p in self.policies])
        seen = torch.stack([p.seen for p in self.policies])
        best = torch.where(seen, stacked, torch.full_like(stacked, float("-inf")))
        best = best.max(dim=0).values
        return torch.where(seen.any(dim=0), best, torch.zeros_like(best))

    @property
    def seen(self) -> Tensor:
        """Bool ``C x C``: pairs scored under at least one operation."""
        return torch.stack([p.seen for p in self.policies]).any(dim=0)

    def operation_scores(self) -> dict[str, Tensor]:
        """Each operation's own ``C x C`` score matrix (CPU copies)."""
        return {
            op: p.scores.detach().cpu().clone()
            for op, p in zip(self.operations, self.policies)
        }

    def helpful_pairs(self) -> list[tuple[int, int, float]]:
        """Class pairs ``(a, b, best score)``, ``a <= b``, that some operation
        makes helpful."""
        return helpful_class_pairs(self.scores, self.seen)

    def helpful_fraction(self) -> float:
        """Fraction of the scored class pairs that some operation makes helpful."""
        return helpful_pair_fraction(self.scores, self.seen)

    # -- steps -----------------------------------------------------------------
    def select(self, y, is_buffer, *, generator=None):
        allowed = allowed_pairs(is_buffer, self.pairing)
        explore = None
        if self.refresh > 0:
            u = uniform_like((y.shape[0],), y.device, generator)
            explore = (u < self.refresh).view(-1, 1)
        weights = []
        for p in self.policies:
            blocked = p.known_detrimental(y)
            if explore is not None:
                blocked = blocked & ~explore
            weights.append(allowed & ~blocked)
        weights = torch.stack(weights)
        if self.fallback == "same_class":
            none = ~weights.any(dim=(0, 2)).view(-1, 1)
            # a row left without partner is mixed within its class, by Mixup
            weights[0] = torch.where(none, same_class_partners(y), weights[0])
        return draw_partner_operation(weights, generator=generator)

    def batch_pair_sums(
        self,
        y: Tensor,
        partner: Tensor,
        inner: Tensor,
        valid: Tensor,
        operation: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Per-operation sums and counts, stacked ``(K, C, C)``."""
        if operation is None:
            raise ValueError("OperationPairs needs each sample's operation")
        parts = [
            p.batch_pair_sums(y, partner, inner, valid & (operation == k))
            for k, p in enumerate(self.policies)
        ]
        return torch.stack([s for s, _ in parts]), torch.stack([c for _, c in parts])

    def update(self, sums: Tensor, counts: Tensor) -> None:
        for k, p in enumerate(self.policies):
            p.update(sums[k], counts[k])

    def helpful(
        self, y: Tensor, partner: Tensor, operation: Tensor | None = None
    ) -> Tensor:
        """Bool ``(N,)``: each sample's pair is helpful under its own operation."""
        if operation is None:
            raise ValueError("OperationPairs needs each sample's operation")
        out = torch.zeros_like(y, dtype=torch.bool)
        for k, p in enumerate(self.policies):
            out = torch.where(operation == k, p.helpful(y, partner), out)
        return out

    def state_dict(self) -> dict:
        return {
            "operations": list(self.operations),
            "policies": [p.state_dict() for p in self.policies],
        }

    def load_state_dict(self, state: dict) -> None:
        if tuple(state["operations"]) != self.operations:
            raise ValueError(
                f"state holds operations {state['operations']}, this policy "
                f"{list(self.operations)}"
            )
        for p, s in zip(self.policies, state["policies"]):
            p.load_state_dict(s)


__all__ = ["OperationPairs", "draw_partner_operation", "uniform_like"]
