"""SoftMatch: truncated-Gaussian weights after uniform distribution alignment.

Chen, Tao, Wang, Wang, Heng, Raj, Savvides, Shinozaki. "SoftMatch:
Addressing the Quantity-Quality Trade-off in Semi-Supervised Learning".
ICLR 2023. https://arxiv.org/abs/2301.10921

Defaults follow the USB benchmark: uniform distribution alignment, EMA
momentum 0.999 and ``n_sigma = 2``. The number of classes may grow between
calls: the alignment's statistics are extended to the new width.
"""

from __future__ import annotations

import torch
from torch import Tensor

from avalanche_mixplugins.validation import check_probability
from ssl_ext.algorithms.base import PseudoLabeler


class DistributionAlignment:
    """Distribution alignment towards a uniform class prior (SoftMatch, USB).

    Keeps an EMA ``p_model`` of the mean predicted distribution (initialised
    with the first batch mean) and rescales the probabilities as
    ``p * p_target / p_model`` renormalised, with ``p_target`` uniform.
    The EMA is updated with the batch *before* aligning it.

    :param momentum: EMA momentum of ``p_model`` (0.999 in SoftMatch).
    """

    def __init__(self, *, momentum: float = 0.999):
        self.momentum = check_probability("momentum", momentum)
        self.p_model: Tensor | None = None

    def _grow(self, num_classes: int, ref: Tensor) -> None:
        if self.p_model is None:
            return
        old = self.p_model.shape[0]
        if num_classes > old:
            # new classes enter with the uniform share, the rest keeps its mass
            extra = torch.full(
                (num_classes - old,), 1.0 / num_classes, device=ref.device
            )
            p = torch.cat([self.p_model.to(ref.device) * (old / num_classes), extra])
            self.p_model = p
        elif num_classes < old:
            raise ValueError(
                f"got {num_classes} classes, fewer than the {old} already tracked"
            )

    def __call__(
        self, probs: Tensor, *, update: bool = True, valid: Tensor | None = None
    ) -> Tensor:
        """Align ``probs`` ``(N, C)``; returns new normalised probabilities.

        :param valid: bool ``(N,)``: the rows that update ``p_model`` (all if
            ``None``). Decided on the device: a batch without a valid row
            leaves ``p_model`` as it was (a first such batch starts it at the
            uniform distribution, which aligns nothing).
        """
        probs = probs.detach()
        num_classes = probs.shape[1]
        self._grow(num_classes, probs)
        if update and probs.shape[0] > 0:
            n = None if valid is None else valid.sum()
            if n is None:
                batch_mean = probs.mean(dim=0)
            else:
                kept = torch.where(valid[:, None], probs, torch.zeros_like(probs))
                batch_mean = kept.sum(dim=0) / n.clamp_min(1)
            if self.p_model is None:
                if n is None:
                    self.p_model = batch_mean.clone()
                else:
                    uniform = torch.full_like(batch_mean, 1.0 / num_classes)
                    self.p_model = torch.where(n > 0, batch_mean, uniform)
            else:
                p = self.p_model.to(probs.device)
                moved = p.mul(self.momentum).add_(batch_mean, alpha=1 - self.momentum)
                self.p_model = moved if n is None else torch.where(n > 0, moved, p)
        if self.p_model is None:
            return probs
        p_target = 1.0 / num_classes
        aligned = probs * p_target / self.p_model.to(probs.device).clamp_min(1e-12)
        return aligned / aligned.sum(dim=-1, keepdim=True)

    def state_dict(self) -> dict:
        return {"p_model": self.p_model}

    def load_state_dict(self, state: dict) -> None:
        p = state["p_model"]
        self.p_model = None if p is None else p.clone()


class SoftMatch(PseudoLabeler):
    """SoftMatch: truncated-Gaussian weights on the pseudo-label confidence.

    With ``m = max_c p_ic`` (after uniform distribution alignment), EMA
    estimates ``mu_t`` and ``var_t`` of the batch mean and (unbiased) variance
    of ``m`` (initialised to ``1/C`` and ``1``), updated before weighting:
    ``weight_i = exp(-min(m_i - mu_t, 0)^2 / (2 var_t / n_sigma^2))``
    (Chen et al., ICLR 2023, Eq. 7; USB's implementation). The hard
    pseudo-label is the arg-max of the **raw** weak-view logits: the
    alignment only shapes the weights.

    :param n_sigma: width of the Gaussian in standard deviations (2).
    :param momentum: EMA momentum of the statistics and of the alignment (0.999).
    :param dist_align: apply uniform distribution alignment before weighting.
    """

    name = "softmatch"
    supports_valid = True

    def __init__(
        self, *, n_sigma: float = 2.0, momentum: float = 0.999, dist_align: bool = True
    ):
        n_sigma = float(n_sigma)
        if not n_sigma > 0:
            raise ValueError(f"n_sigma must be positive, got {n_sigma}")
        self.n_sigma = n_sigma
        self.momentum = check_probability("momentum", momentum)
        self.alignment = (
            DistributionAlignment(momentum=momentum) if dist_align else None
        )
        self.prob_max_mu: Tensor | None = None
        self.prob_max_var: Tensor | None = None

    def _probs(self, logits, *, update, valid=None):
        probs = logits.softmax(dim=-1)
        if self.alignment is not None:
            probs = self.alignment(probs, update=update, valid=valid)
        return probs

    def _weights(self, probs, max_probs, targets, *, index, update, valid=None):
        if self.prob_max_mu is None:
            self.prob_max_mu = torch.tensor(
                1.0 / probs.shape[1], device=max_probs.device
            )
            self.prob_max_var = torch.tensor(1.0, device=max_probs.device)
        mu = self.prob_max_mu.to(max_probs.device)
        var = self.prob_max_var.to(max_probs.device)
        m = self.momentum
        if update and valid is None and max_probs.shape[0] > 1:
            mu = mu * m + (1 - m) * max_probs.mean()
            var = var * m + (1 - m) * max_probs.var(unbiased=True)
            self.prob_max_mu, self.prob_max_var = mu, var
        elif update and valid is not None:
            # the mean and unbiased variance of the valid rows, on the device;
            # fewer than two valid rows leave the estimates as they were
            n = valid.sum()
            zero = torch.zeros_like(max_probs)
            mean = torch.where(valid, max_probs, zero).sum() / n.clamp_min(1)
            sq = torch.where(valid, (max_probs - mean) ** 2, zero).sum()
            batch_var = sq / (n - 1).clamp_min(1)
            enough = n > 1
            mu = torch.where(enough, mu * m + (1 - m) * mean, mu)
            var = torch.where(enough, var * m + (1 - m) * batch_var, var)
            self.prob_max_mu, self.prob_max_var = mu, var
        diff = torch.clamp(max_probs - mu, max=0.0)
        return torch.exp(-(diff**2) / (2 * var / self.n_sigma**2))

    def state_dict(self) -> dict:
        state = {"prob_max_mu": self.prob_max_mu, "prob_max_var": self.prob_max_var}
        if self.alignment is not None:
            state["p_model"] = self.alignment.p_model
        return state

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        p_model = state.pop("p_model", None)
        if self.alignment is not None:
            self.alignment.load_state_dict({"p_model": p_model})
        for key in ("prob_max_mu", "prob_max_var"):
            value = state.pop(key)
            setattr(self, key, None if value is None else value.clone())
        if state:
            raise ValueError(f"unexpected keys in state dict: {sorted(state)}")


__all__ = ["DistributionAlignment", "SoftMatch"]
