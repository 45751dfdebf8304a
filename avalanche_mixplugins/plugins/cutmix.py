"""Random-pair CutMix for Avalanche replay strategies."""

from __future__ import annotations

from avalanche_mixplugins.plugins.base import RandomMixPlugin


class CutMixPlugin(RandomMixPlugin, supports_distributed=True):
    """CutMix of random sample pairs, added to a replay strategy's loss.

    Yun, Han, Oh, Chun, Choe, Yoo. "CutMix: Regularization Strategy to Train
    Strong Classifiers with Localizable Features". ICCV 2019.
    https://arxiv.org/abs/1905.04899

    Pairs are drawn as in :class:`~avalanche_mixplugins.plugins.MixupPlugin`.
    A box of ``x_j`` covering a fraction ``1 - lam`` of the image
    (``lam ~ Beta(alpha, alpha)``, box clipped at the borders) is pasted into
    ``x_i`` (:func:`~avalanche_mixplugins.mixing.cutmix_inputs`); the label
    weight is corrected to the pasted area, ``lam' = 1 - box area / image
    area``, and ``lam' CE(f(x~), y_i) + (1 - lam') CE(f(x~), y_j)`` is added to
    the strategy's loss. Inputs must be image batches ``(N, C, H, W)``. The
    constructor arguments are those of
    :class:`~avalanche_mixplugins.plugins.base.RandomMixPlugin`: ``alpha``,
    ``prob``, ``weight``, ``pairing``, ``asymmetric`` and ``seed``.
    """

    mix_mode = "cutmix"


__all__ = ["CutMixPlugin"]
