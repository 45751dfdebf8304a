"""Semi-supervised learning for Avalanche, with CalibrateMix.

A semi-supervised strategy (FixMatch, SoftMatch, FlexMatch) built on
Avalanche's ``SupervisedTemplate``, timm backbones and CalibrateMix, the
training-dynamics-guided mixup of

    Rahman, Mohan, Sosea, Caragea. "CalibrateMix: Guided-Mixup Calibration of
    Image Semi-Supervised Models". arXiv:2511.12964 (AAAI 2026).

Modules:

* :mod:`ssl_ext.strategy`: :class:`SemiSupervisedStrategy`, one labeled
  batch of ``B`` and an unlabeled batch of ``mu * B`` per iteration, one joint
  forward, every Avalanche callback; the per-iteration tensors (views, logits,
  pseudo-labels, weights, loss parts, sample ids) are strategy attributes so
  plugins can add loss terms. It is Avalanche's ``SupervisedTemplate`` plus
  one mixin per idea: :mod:`ssl_ext.extension_points` (what a plugin may
  call: ``add_forward_input``, ``second_pass``, ...),
  :mod:`ssl_ext.experience_setup` (sample ids, loaders, pseudo-labeller and
  EMA teacher per experience), :mod:`ssl_ext.pseudo_labelling` (statistics
  over every rank, NaN rows out), :mod:`ssl_ext.amp_ema` (mixed precision,
  EMA teacher, skipped non-finite steps) and :mod:`ssl_ext.checkpoint_state`
  (its state for :mod:`avalanche_mixplugins.checkpoint`); with
  :mod:`ssl_ext.sample_ids` (labeled sample ids) and :mod:`ssl_ext.loaders`
  (resumable loaders).
* :mod:`ssl_ext.algorithms`: the pseudo-labelling rules of FixMatch (Sohn et
  al., NeurIPS 2020), FlexMatch (Zhang et al., NeurIPS 2021) and SoftMatch
  (Chen et al., ICLR 2023), one module each, with a registry by name; pure
  tensor code.
* :mod:`ssl_ext.views`: weak and strong augmentation of batches on the
  training device (torchvision ``transforms.v2``).
* :mod:`ssl_ext.backbones`: WideResNet-28-2 / 28-8 (Zagoruyko & Komodakis,
  BMVC 2016) registered in timm; importing :mod:`ssl_ext` registers them, so
  ``timm.create_model("wrn28_2", num_classes=10, in_chans=1)`` works.
* :mod:`ssl_ext.dynamics`: AUM and APM trackers keyed by sample index
  (pure tensor code).
* :mod:`ssl_ext.calibratemix`: easy/hard split, dissimilar pairing and the
  mixed loss (pure); :mod:`ssl_ext.calibratemix_plugin`:
  :class:`CalibrateMixPlugin`, the one-argument switch
  (``plugins=[CalibrateMixPlugin(mode="fast")]``), with its tables and
  checkpoint state in :mod:`ssl_ext.calibratemix_state` and its split
  diagnostics in :mod:`ssl_ext.calibratemix_diagnostics`.
* :mod:`ssl_ext.experiments`: experiment support for scripts (datasets by
  name, the labeled split, CalibrateMix options, diagnostics), not needed
  to train.

Calibration metrics (ECE, MCE, NLL, Brier) for the evaluation live in
:mod:`avalanche_mixplugins.metrics`; argument validators shared with it in
:mod:`avalanche_mixplugins.validation`.
"""

from ssl_ext.algorithms import (
    ALGORITHMS,
    DistributionAlignment,
    FixMatch,
    FlexMatch,
    PseudoLabeler,
    PseudoLabels,
    SoftMatch,
    consistency_loss,
    make_pseudo_labeler,
)
from ssl_ext.backbones import WideResNet, create_backbone, wrn28_2, wrn28_8
from ssl_ext.calibratemix_plugin import CalibrateMixPlugin
from ssl_ext.dynamics import APMTracker, AUMTracker
from ssl_ext.strategy import (
    SAMPLE_ID,
    IndexedDataset,
    SecondPass,
    SemiSupervisedStrategy,
    SSLLoss,
    add_sample_ids,
)
from ssl_ext.views import SSLViews, random_crop_flip, to_float_images

__version__ = "0.1.0"

__all__ = [
    "ALGORITHMS",
    "APMTracker",
    "AUMTracker",
    "CalibrateMixPlugin",
    "SAMPLE_ID",
    "DistributionAlignment",
    "FixMatch",
    "FlexMatch",
    "IndexedDataset",
    "PseudoLabeler",
    "PseudoLabels",
    "SSLLoss",
    "SSLViews",
    "SecondPass",
    "SemiSupervisedStrategy",
    "SoftMatch",
    "WideResNet",
    "__version__",
    "add_sample_ids",
    "consistency_loss",
    "create_backbone",
    "make_pseudo_labeler",
    "random_crop_flip",
    "to_float_images",
    "wrn28_2",
    "wrn28_8",
]
