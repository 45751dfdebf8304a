"""The pseudo-labelling rules by name: :data:`PSEUDO_LABELERS`, :func:`make_pseudo_labeler`.

A new rule is a :class:`~ssl_ext.algorithms.base.PseudoLabeler` subclass in
its own module of this package plus one entry here; the strategy's
``algorithm=`` argument and the examples' ``--algorithm`` option accept
every name of :data:`ALGORITHMS`.
"""

from __future__ import annotations

from ssl_ext.algorithms.base import PseudoLabeler
from ssl_ext.algorithms.fixmatch import FixMatch
from ssl_ext.algorithms.flexmatch import FlexMatch
from ssl_ext.algorithms.softmatch import SoftMatch

PSEUDO_LABELERS: dict[str, type[PseudoLabeler]] = {
    "fixmatch": FixMatch,
    "softmatch": SoftMatch,
    "flexmatch": FlexMatch,
}
"""Registry of the pseudo-labelling rules, by the name ``algorithm=`` takes."""

ALGORITHMS = tuple(PSEUDO_LABELERS)


def make_pseudo_labeler(
    algorithm: str, *, num_unlabeled: int | None = None, **kwargs
) -> PseudoLabeler:
    """Build the pseudo-labelling rule named ``algorithm``.

    :param algorithm: one of :data:`ALGORITHMS` (``"fixmatch"``,
        ``"softmatch"``, ``"flexmatch"``).
    :param num_unlabeled: size of the unlabeled set (for the rules that keep
        a table over it: FlexMatch).
    :param kwargs: the algorithm's own keyword arguments.
    """
    try:
        rule = PSEUDO_LABELERS[algorithm]
    except (KeyError, TypeError):
        raise ValueError(
            f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}"
        ) from None
    if rule.needs_num_unlabeled:
        if num_unlabeled is None:
            raise ValueError(f"{algorithm} needs num_unlabeled")
        kwargs["num_unlabeled"] = num_unlabeled
    return rule(**kwargs)


__all__ = ["ALGORITHMS", "PSEUDO_LABELERS", "make_pseudo_labeler"]
