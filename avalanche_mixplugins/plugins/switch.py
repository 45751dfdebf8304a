"""Random-pair Mixup or CutMix, switched per step or per sample (timm's recipe)."""

from __future__ import annotations

import torch
from torch import Tensor

from avalanche_mixplugins.mixing import sample_lambda
from avalanche_mixplugins.operation_pairs import uniform_like
from avalanche_mixplugins.plugins.base import RandomMixPlugin
from avalanche_mixplugins.validation import check_alpha, check_fraction, check_one_of

SWITCH_MODES = ("batch", "elem")


class MixupCutMixPlugin(RandomMixPlugin, supports_distributed=True):
    """Mixup or CutMix of random pairs, the operation switched at random.

    What practitioners often run: timm's ``timm.data.Mixup`` with both
    ``mixup_alpha`` and ``cutmix_alpha`` set draws, per batch (``mode="batch"``)
    or per sample (``mode="elem"``), CutMix with probability ``switch_prob``
    and Mixup otherwise (the DeiT recipe uses 0.8 / 1.0 / 0.5).

    * Mixup: Zhang et al. "mixup: Beyond Empirical Risk Minimization". ICLR
      2018. https://arxiv.org/abs/1710.09412
    * CutMix: Yun et al. "CutMix: Regularization Strategy to Train Strong
      Classifiers with Localizable Features". ICCV 2019.
      https://arxiv.org/abs/1905.04899

    Pairs, loss and integration are those of
    :class:`~avalanche_mixplugins.plugins.base.RandomMixPlugin` (random
    partners among the training samples, current and replayed; one ``lam``
    per pair; CutMix's weight corrected to the pasted area). The operation is
    drawn on the training device; in ``"batch"`` mode one draw decides the
    whole step. Differences from timm: partners are random rather than the
    reversed batch, ``lam`` is drawn per pair (timm's ``"pair"``/``"elem"``
    modes; ``"batch"`` mode draws one per batch) and CutMix boxes follow
    :func:`~avalanche_mixplugins.mixing.cutmix_boxes`.
    """

    mix_mode = "auto"

    def __init__(
        self,
        *,
        mixup_alpha: float = 1.0,
        cutmix_alpha: float = 1.0,
        switch_prob: float = 0.5,
        mode: str = "batch",
        prob: float = 1.0,
        weight: float = 1.0,
        loss_form: str = "add",
        pairing: str = "all",
        asymmetric: bool | str | None = None,
        seed: int | None = None,
    ):
        """Build the plugin; every argument is keyword-only.

        :param mixup_alpha: Beta concentration of Mixup's ``lam`` (> 0).
        :param cutmix_alpha: Beta concentration of CutMix's ``lam`` (> 0).
        :param switch_prob: chance of CutMix, in [0, 1].
        :param mode: ``"batch"`` (one operation per step, timm's default) or
            ``"elem"`` (one per sample).
        :param prob: chance that an iteration is mixed, in [0, 1].
        :param weight: weight of the mixed loss (>= 0).
        :param loss_form: ``"add"`` or ``"replace"``, see
            :class:`~avalanche_mixplugins.plugins.base.MixingPlugin`.
        :param pairing: which samples may be paired, as for
            :class:`~avalanche_mixplugins.plugins.MixupPlugin`.
        :param asymmetric: see :class:`~avalanche_mixplugins.plugins.base.MixingPlugin`.
        :param seed: seed of the plugin's random generator.
        """
        super().__init__(
            alpha=mixup_alpha,
            prob=prob,
            weight=weight,
            loss_form=loss_form,
            pairing=pairing,
            asymmetric=asymmetric,
            seed=seed,
        )
        self.mixup_alpha = self.alpha
        self.cutmix_alpha = check_alpha(cutmix_alpha)
        self.switch_prob = check_fraction("switch_prob", switch_prob)
        self.mode = check_one_of("mode", mode, SWITCH_MODES)

    def draw_operations(self, n: int, device) -> Tensor:
        if self.mode == "elem":
            return super().draw_operations(n, device)
        u = uniform_like((1,), device, self._generator_for(device))
        return (u < self.switch_prob).long().expand(n)

    def draw_lambda(self, n: int, operation: Tensor | None, device) -> Tensor:
        gen = self._generator_for(device)
        lam_mix = sample_lambda(self.mixup_alpha, n, device=device, generator=gen)
        lam_cut = sample_lambda(self.cutmix_alpha, n, device=device, generator=gen)
        if operation is None:
            return lam_mix
        return torch.where(operation.to(device) == 1, lam_cut, lam_mix)


__all__ = ["SWITCH_MODES", "MixupCutMixPlugin"]
