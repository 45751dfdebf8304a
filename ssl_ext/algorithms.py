"""Pseudo-labelling rules of FixMatch, SoftMatch and FlexMatch (pure tensor maths).

Each algorithm maps the (detached) logits of the weakly augmented unlabeled
views to *targets* (hard pseudo-labels) and per-sample *weights* (a binary
confidence mask for FixMatch and FlexMatch, a soft truncated-Gaussian weight
for SoftMatch). The unsupervised loss is then the weighted cross-entropy of
the strongly augmented views against those targets
(:func:`consistency_loss`). Nothing here imports Avalanche.

* FixMatch: Sohn, Berthelot, Li, Zhang, Carlini, Cubuk, Kurakin, Zhang,
  Raffel. "FixMatch: Simplifying Semi-Supervised Learning with Consistency and
  Confidence". NeurIPS 2020. https://arxiv.org/abs/2001.07685
* FlexMatch: Zhang, Wang, Hou, Wu, Wang, Okumura, Shinozaki. "FlexMatch:
  Boosting Semi-Supervised Learning with Curriculum Pseudo Labeling".
  NeurIPS 2021. https://arxiv.org/abs/2110.08263
* SoftMatch: Chen, Tao, Wang, Wang, Heng, Raj, Savvides, Shinozaki. "SoftMatch:
  Addressing the Quantity-Quality Trade-off in Semi-Supervised Learning".
  ICLR 2023. https://arxiv.org/abs/2301.10921

Defaults follow the USB benchmark (Wang et al., NeurIPS 2022 Datasets and
Benchmarks): FixMatch threshold 0.95; SoftMatch with uniform distribution
alignment, EMA momentum 0.999 and ``n_sigma = 2``; FlexMatch threshold 0.95,
convex mapping ``x / (2 - x)`` and threshold warm-up.

All statistics are tensors updated in place without host synchronisation; the
number of classes may grow between calls (class-incremental models whose
output layer grows): statistics are extended to the new width on the fly.
Every algorithm exposes ``state_dict()`` / ``load_state_dict()``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from avalanche_mixplugins.validation import check_batch_logits, check_probability

ALGORITHMS = ("fixmatch", "softmatch", "flexmatch")


class PseudoLabels(NamedTuple):
    """Output of a pseudo-labelling rule for one unlabeled batch.

    :param targets: hard pseudo-labels, integer ``(N,)``.
    :param weights: per-sample loss weights in ``[0, 1]``, float ``(N,)``
        (a 0/1 mask for FixMatch and FlexMatch).
    :param probs: the class probabilities the weights were computed from,
        ``(N, C)`` (after distribution alignment for SoftMatch; the targets are
        always the arg-max of the raw logits).
    """

    targets: Tensor
    weights: Tensor
    probs: Tensor


def consistency_loss(logits: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
    """Weighted cross-entropy of ``logits`` against pseudo-labels.

    ``mean_i(weights_i * CE(logits_i, targets_i))``, averaged over the whole
    batch (masked samples count in the denominator), as in FixMatch and USB.

    :param logits: ``(N, C)`` logits of the strong views (with gradient).
    :param targets: integer ``(N,)`` hard labels or float ``(N, C)`` soft labels.
    :param weights: ``(N,)`` per-sample weights.
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    if targets.dim() == 2:
        ce = -(targets * F.log_softmax(logits.float(), dim=-1)).sum(-1)
    else:
        ce = F.cross_entropy(logits.float(), targets, reduction="none")
    return (ce * weights.to(ce.dtype)).mean()


class PseudoLabeler:
    """Base class: a pseudo-labelling rule with optional running statistics.

    Subclasses implement :meth:`_weights`; calling the object on the detached
    weak-view logits returns :class:`PseudoLabels` (hard targets). ``update``
    controls whether running statistics move (set it to ``False`` to label a
    batch a second time without counting it twice).
    """

    name = "base"

    def __call__(
        self, logits_weak: Tensor, *, index: Tensor | None = None, update: bool = True
    ) -> PseudoLabels:
        """Pseudo-label a batch.

        :param logits_weak: ``(N, C)`` logits of the weak views (detached here).
        :param index: ``(N,)`` dataset indices of the samples (FlexMatch needs
            them; the others ignore them).
        :param update: update the running statistics with this batch.
        """
        logits = check_batch_logits(logits_weak)
        if index is not None and index.shape != logits.shape[:1]:
            raise ValueError(
                f"index has shape {tuple(index.shape)}, expected ({logits.shape[0]},)"
            )
        probs = self._probs(logits, update=update)
        # the hard pseudo-label is the arg-max of the raw logits; SoftMatch's
        # distribution alignment only shapes the weights (USB, the release)
        targets = logits.argmax(dim=-1)
        max_probs = probs.amax(dim=-1)
        weights = self._weights(probs, max_probs, targets, index=index, update=update)
        return PseudoLabels(targets, weights.to(torch.float32), probs)

    def _probs(self, logits: Tensor, *, update: bool) -> Tensor:
        return logits.softmax(dim=-1)

    def _weights(
        self,
        probs: Tensor,
        max_probs: Tensor,
        targets: Tensor,
        *,
        index: Tensor | None,
        update: bool,
    ) -> Tensor:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Running statistics (tensors are returned as is, not copied)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore statistics saved by :meth:`state_dict`."""
        unknown = set(state) - set(self.state_dict())
        if unknown:
            raise ValueError(f"unexpected keys in state dict: {sorted(unknown)}")
        for key, value in state.items():
            setattr(
                self, key, value if not isinstance(value, Tensor) else value.clone()
            )

    def to(self, device: torch.device | str) -> PseudoLabeler:
        """Move the statistics to ``device`` (in place); returns ``self``."""
        state = self.state_dict()
        self.load_state_dict(
            {k: v.to(device) if isinstance(v, Tensor) else v for k, v in state.items()}
        )
        return self

    def __repr__(self) -> str:
        params = ", ".join(
            f"{k}={v}" for k, v in vars(self).items() if isinstance(v, int | float)
        )
        return f"{type(self).__name__}({params})"


class FixMatch(PseudoLabeler):
    """FixMatch: hard pseudo-label kept when its confidence reaches a threshold.

    ``weight_i = 1[max_c p_ic >= threshold]`` with ``p = softmax(z_weak)``
    (Sohn et al., NeurIPS 2020).

    :param threshold: confidence threshold (0.95 in the paper and USB).
    """

    name = "fixmatch"

    def __init__(self, *, threshold: float = 0.95):
        self.threshold = check_probability("threshold", threshold)

    def _weights(self, probs, max_probs, targets, *, index, update):
        return (max_probs >= self.threshold).float()


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

    def __call__(self, probs: Tensor, *, update: bool = True) -> Tensor:
        """Align ``probs`` ``(N, C)``; returns new normalised probabilities."""
        probs = probs.detach()
        num_classes = probs.shape[1]
        self._grow(num_classes, probs)
        if update and probs.shape[0] > 0:
            batch_mean = probs.mean(dim=0)
            if self.p_model is None:
                self.p_model = batch_mean.clone()
            else:
                self.p_model = self.p_model.to(probs.device)
                self.p_model.mul_(self.momentum).add_(
                    batch_mean, alpha=1 - self.momentum
                )
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

    def _probs(self, logits, *, update):
        probs = logits.softmax(dim=-1)
        if self.alignment is not None:
            probs = self.alignment(probs, update=update)
        return probs

    def _weights(self, probs, max_probs, targets, *, index, update):
        if self.prob_max_mu is None:
            self.prob_max_mu = torch.tensor(
                1.0 / probs.shape[1], device=max_probs.device
            )
            self.prob_max_var = torch.tensor(1.0, device=max_probs.device)
        mu = self.prob_max_mu.to(max_probs.device)
        var = self.prob_max_var.to(max_probs.device)
        if update and max_probs.shape[0] > 1:
            m = self.momentum
            mu = mu * m + (1 - m) * max_probs.mean()
            var = var * m + (1 - m) * max_probs.var(unbiased=True)
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


class FlexMatch(PseudoLabeler):
    """FlexMatch: class-wise thresholds from curriculum pseudo-labelling.

    A table ``selected[n]`` holds, for every unlabeled sample ``n``, the last
    class it was pseudo-labelled with at confidence ``>= threshold`` (``-1``
    if never). With ``sigma_c`` the number of samples selected for class ``c``,
    the learning effect is ``beta_c = sigma_c / max(max_c sigma_c, N_unused)``
    with warm-up (``N_unused`` = number of ``-1`` entries) or
    ``sigma_c / max_c sigma_c`` without. A sample is kept when
    ``max_c p_ic >= threshold * M(beta_{y_i})`` with the convex mapping
    ``M(x) = x / (2 - x)`` (Zhang et al., NeurIPS 2021, Eq. 6-11). As in USB,
    the mask uses the thresholds *before* this batch's update, and ``beta``
    is only refreshed while some sample is still unused
    (``max sigma < N``).

    :param num_unlabeled: size of the unlabeled dataset (length of the table);
        indices passed at call time must lie in ``[0, num_unlabeled)``.
    :param threshold: base confidence threshold (0.95).
    :param warmup: threshold warm-up (count unused samples in the normaliser).
    """

    name = "flexmatch"

    def __init__(
        self, *, num_unlabeled: int, threshold: float = 0.95, warmup: bool = True
    ):
        if int(num_unlabeled) != num_unlabeled or num_unlabeled < 1:
            raise ValueError(
                f"num_unlabeled must be a positive integer, got {num_unlabeled!r}"
            )
        self.num_unlabeled = int(num_unlabeled)
        self.threshold = check_probability("threshold", threshold)
        self.warmup = bool(warmup)
        self.selected_label = torch.full((self.num_unlabeled,), -1, dtype=torch.long)
        self.classwise_acc = torch.zeros(0)

    def _grow(self, num_classes: int, device: torch.device) -> None:
        if self.selected_label.device != device:
            self.selected_label = self.selected_label.to(device)
        self.classwise_acc = self.classwise_acc.to(device)
        old = self.classwise_acc.shape[0]
        if num_classes > old:
            pad = torch.zeros(num_classes - old, device=device)
            self.classwise_acc = torch.cat([self.classwise_acc, pad])
        elif num_classes < old:
            raise ValueError(
                f"got {num_classes} classes, fewer than the {old} already tracked"
            )

    def class_thresholds(self) -> Tensor:
        """Current per-class thresholds ``threshold * M(beta_c)``, ``(C,)``."""
        acc = self.classwise_acc
        return self.threshold * (acc / (2.0 - acc))

    def _weights(self, probs, max_probs, targets, *, index, update):
        if index is None:
            raise ValueError(
                "FlexMatch needs the dataset indices of the batch (index=)"
            )
        num_classes = probs.shape[1]
        self._grow(num_classes, max_probs.device)
        mask = (max_probs >= self.class_thresholds()[targets]).float()
        if update:
            index = index.to(max_probs.device).long()
            select = max_probs >= self.threshold
            # masked scatter without a host sync: unselected rows rewrite
            # their current value
            current = self.selected_label[index]
            self.selected_label[index] = torch.where(select, targets, current)
            counts = torch.bincount(self.selected_label + 1, minlength=num_classes + 1)
            counts = counts.float()
            per_class = counts[1 : num_classes + 1]
            denom = counts.max() if self.warmup else per_class.max()
            acc = per_class / denom.clamp_min(1.0)
            refresh = counts.max() < self.num_unlabeled
            self.classwise_acc = torch.where(refresh, acc, self.classwise_acc)
        return mask

    def state_dict(self) -> dict:
        return {
            "selected_label": self.selected_label,
            "classwise_acc": self.classwise_acc,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["selected_label"].shape != self.selected_label.shape:
            raise ValueError(
                "selected_label has shape "
                f"{tuple(state['selected_label'].shape)}, expected "
                f"{tuple(self.selected_label.shape)}"
            )
        super().load_state_dict(state)


def make_pseudo_labeler(
    algorithm: str, *, num_unlabeled: int | None = None, **kwargs
) -> PseudoLabeler:
    """Build the pseudo-labelling rule named ``algorithm``.

    :param algorithm: one of ``"fixmatch"``, ``"softmatch"``, ``"flexmatch"``.
    :param num_unlabeled: size of the unlabeled set (FlexMatch only).
    :param kwargs: the algorithm's own keyword arguments.
    """
    if algorithm == "fixmatch":
        return FixMatch(**kwargs)
    if algorithm == "softmatch":
        return SoftMatch(**kwargs)
    if algorithm == "flexmatch":
        if num_unlabeled is None:
            raise ValueError("flexmatch needs num_unlabeled")
        return FlexMatch(num_unlabeled=num_unlabeled, **kwargs)
    raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")


__all__ = [
    "ALGORITHMS",
    "DistributionAlignment",
    "FixMatch",
    "FlexMatch",
    "PseudoLabeler",
    "PseudoLabels",
    "SoftMatch",
    "consistency_loss",
    "make_pseudo_labeler",
]
