"""Random-pair CutMix for Avalanche replay strategies."""

from __future__ import annotations

from avalanche_mixplugins.pairing import RandomPairs
from avalanche_mixplugins.plugins.base import MixingPlugin


class CutMixPlugin(MixingPlugin, supports_distributed=True):
    """CutMix of random sample pairs, added to a replay strategy's loss.

    Yun, Han, Oh, Chun, Choe, Yoo. "CutMix: Regularization Strategy to Train
    Strong Classifiers with Localizable Features". ICCV 2019.
    https://arxiv.org/abs/1905.04899

    Pairs are drawn as in :class:`~avalanche_mixplugins.plugins.MixupPlugin`.
    A box of ``x_j`` covering a fraction ``1 - lam`` of the image
    (``lam ~ Beta(alpha, alpha)``, box clipped at the borders) is pasted into
    ``x_i``; the label weight is corrected to the pasted area,
    ``lam' = 1 - box area / image area``, and
    ``lam' CE(f(x~), y_i) + (1 - lam') CE(f(x~), y_j)`` is added to the
    strategy's loss. Inputs must be image batches ``(N, C, H, W)``.

    :param alpha: Beta concentration (> 0).
    :param prob: chance that an iteration is mixed, in [0, 1].
    :param weight: weight of the mixed loss added to the strategy's loss.
    :param pairing: ``"all"``, ``"buffer_current"`` or ``"current"`` (see
        :class:`~avalanche_mixplugins.plugins.MixupPlugin`).
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
            mix="cutmix",
            alpha=alpha,
            prob=prob,
            weight=weight,
            asymmetric=asymmetric,
            seed=seed,
        )


__all__ = ["CutMixPlugin"]
