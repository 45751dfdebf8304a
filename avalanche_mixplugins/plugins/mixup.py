"""Random-pair Mixup for Avalanche replay strategies."""

from __future__ import annotations

from avalanche_mixplugins.plugins.base import RandomMixPlugin


class MixupPlugin(RandomMixPlugin, supports_distributed=True):
    """Mixup of random sample pairs, added to a replay strategy's loss.

    Zhang, Cisse, Dauphin, Lopez-Paz. "mixup: Beyond Empirical Risk
    Minimization". ICLR 2018. https://arxiv.org/abs/1710.09412

    Each pair ``(i, j)`` is mixed as ``x~ = lam x_i + (1 - lam) x_j``
    (:func:`~avalanche_mixplugins.mixing.mix_inputs`). Pairs, ``lam`` and the
    loss are those of :class:`~avalanche_mixplugins.plugins.base.RandomMixPlugin`,
    whose constructor arguments this class takes: ``alpha``, ``prob``,
    ``weight``, ``pairing`` (``"all"``, ``"buffer_current"``,
    ``"with_buffer"`` or ``"current"``), ``asymmetric`` and ``seed``.
    """

    mix_mode = "mixup"


__all__ = ["MixupPlugin"]
