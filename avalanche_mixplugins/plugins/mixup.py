"""Random-pair Mixup for Avalanche replay strategies."""

from __future__ import annotations

from avalanche_mixplugins.pairing import RandomPairs
from avalanche_mixplugins.plugins.base import MixingPlugin


class MixupPlugin(MixingPlugin, supports_distributed=True):
    """Mixup of random sample pairs, added to a replay strategy's loss.

    Zhang, Cisse, Dauphin, Lopez-Paz. "mixup: Beyond Empirical Risk
    Minimization". ICLR 2018. https://arxiv.org/abs/1710.09412

    Each iteration, every sample of the training batch (current samples and
    the replayed buffer samples, wherever the strategy keeps them) gets a
    uniformly random partner among the admissible ones, the pair is mixed as
    ``x~ = lam x_i + (1 - lam) x_j`` with ``lam ~ Beta(alpha, alpha)`` (one per
    pair), and ``lam CE(f(x~), y_i) + (1 - lam) CE(f(x~), y_j)``, averaged over
    the batch, is added to the strategy's loss with weight ``weight``. This is
    the random-pair baseline of GradMix (Kim et al., arXiv:2505.08528).

    Works with ``Naive`` + ``ReplayPlugin``, ``ER_ACE``, ``ER_AML``, ``DER`` and
    strategies without a buffer; composes with other plugins in the list.

    :param alpha: Beta concentration (> 0). 1.0 draws ``lam`` uniformly.
    :param prob: chance that an iteration is mixed, in [0, 1].
    :param weight: weight of the mixed loss added to the strategy's loss
        (>= 0). The default 1.0 trains on the original and the mixed batch
        with equal weight.
    :param pairing: ``"all"`` (any two samples), ``"buffer_current"`` (a buffer
        sample with a current one; nothing is mixed before a buffer exists) or
        ``"current"`` (current samples only).
    :param asymmetric: score candidates of two current samples over the
        current classes only, as ER-ACE does (``None``: on for ``ER_ACE`` and
        ``ER_AML``); see :class:`MixingPlugin`.
    :param seed: seed of the plugin's random generator.
    """

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        prob: float = 1.0,
        weight: float = 1.0,
        pairing: str = "all",
        asymmetric: bool | str | None = None,
        seed: int | None = None,
    ):
        super().__init__(
            policy=RandomPairs(pairing=pairing),
            mix="mixup",
            alpha=alpha,
            prob=prob,
            weight=weight,
            asymmetric=asymmetric,
            seed=seed,
        )


__all__ = ["MixupPlugin"]
