"""CalibrateMix maths: easy/hard split, dissimilar pairing, mixed loss (pure).

Rahman, Mohan, Sosea, Caragea. "CalibrateMix: Guided-Mixup Calibration of
Image Semi-Supervised Models". arXiv:2511.12964 (AAAI 2026, "On the
Calibration of Image Semi-Supervised Learning Models").
https://arxiv.org/abs/2511.12964

Per training iteration, with a labeled batch of ``B`` samples scored by their
AUM (:class:`~ssl_ext.dynamics.AUMTracker`) and an unlabeled batch of ``U``
samples scored by their APM at the pseudo-label
(:class:`~ssl_ext.dynamics.APMTracker`):

1. :func:`median_split`: in each batch, the lower half of the scores is
   *hard*, the upper half *easy*;
2. :func:`dissimilar_partners`: every labeled-easy sample is paired with an
   unlabeled-hard one and every labeled-hard sample with an unlabeled-easy
   one, drawn uniformly among the ``k`` candidates whose flattened input is
   least cosine-similar to it; one ``B x U`` similarity matrix for the whole
   batch (cross-group entries masked), no Python loop over samples; each
   labeled sample is used once, unlabeled partners may repeat;
3. :func:`make_mixed_batch`: ``x~ = lam x_labeled + (1 - lam) x_unlabeled_weak``
   with one ``lam ~ Beta(alpha, alpha)`` per mix group (``alpha = 0.4``);
4. :func:`calibratemix_loss`: ``lam L(z~, onehot(y)) + (1 - lam)
   L(z~, onehot(y_hat))`` with ``L`` the sigmoid binary cross-entropy
   averaged over classes (the release) or the softmax cross-entropy, averaged
   within each mix group and summed over the two groups
   (``L_mix1 + L_mix2``).

Modules: :mod:`.split` (step 1), :mod:`.pairing` (step 2),
:mod:`.mixed_batch` (steps 3 and 4). The Avalanche glue (warm-up, the
trackers, the ``fast`` and ``faithful`` modes) is
:class:`ssl_ext.calibratemix_plugin.CalibrateMixPlugin`. Nothing here
imports Avalanche. Shapes: inputs ``(N, ...)``, scores ``(N,)``; every
index tensor is long on the inputs' device.
"""

from avalanche_mixplugins.deprecation import moved_names
from avalanche_mixplugins.validation import check_k_fraction
from ssl_ext.calibratemix.mixed_batch import (
    DEFAULT_ALPHA,
    MIX_LOSSES,
    CalibrateMixBatch,
    calibratemix_loss,
    make_mixed_batch,
)
from ssl_ext.calibratemix.pairing import (
    DEFAULT_K_FRACTION,
    Partners,
    cosine_similarity_matrix,
    dissimilar_partners,
    least_similar,
    num_candidates,
)
from ssl_ext.calibratemix.split import Split, median_split, median_split_masks

# the name before CalibrateMixBatch
__getattr__ = moved_names(__name__, {"MixedBatch": f"{__name__}:CalibrateMixBatch"})

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_K_FRACTION",
    "MIX_LOSSES",
    "CalibrateMixBatch",
    "Partners",
    "Split",
    "calibratemix_loss",
    "check_k_fraction",
    "cosine_similarity_matrix",
    "dissimilar_partners",
    "least_similar",
    "make_mixed_batch",
    "median_split",
    "median_split_masks",
    "num_candidates",
]
