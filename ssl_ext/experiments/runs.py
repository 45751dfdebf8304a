"""What a semi-supervised run adds around the strategy: schedule, CalibrateMix
from the command line, result summaries and diagnostics.

* :func:`add_algorithm_option`, :func:`add_ssl_batch_options`: the base
  algorithm and the two batch sizes from the command line;
* :func:`cosine_schedule`: the USB recipe's learning-rate decay;
* :func:`add_calibratemix_options` and :func:`calibratemix_from_args`:
  :class:`~ssl_ext.calibratemix_plugin.CalibrateMixPlugin` from a command
  line; :func:`calibratemix_summary`: what a result file records of it;
* :class:`PseudoLabelMonitor`: the quality of the pseudo-labels, measured
  against the true labels of the unlabeled images, never used for training.
"""

from __future__ import annotations

import argparse
import math
import warnings

import numpy as np
import torch
from avalanche.core import SupervisedPlugin
from torch import Tensor

from avalanche_mixplugins.experiments.runs import add_batch_size_option
from ssl_ext.algorithms import ALGORITHMS
from ssl_ext.calibratemix_plugin import RELEASE_WARMUP_FRACTION, CalibrateMixPlugin
from ssl_ext.experiments.records import plugin_config


def cosine_schedule(
    optimizer: torch.optim.Optimizer, iterations: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """USB's cosine decay: ``lr * cos(7 pi k / (16 K))``, stepped per iteration."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: math.cos(7 * math.pi * k / (16 * max(1, iterations)))
    )


# ------------------------------------------------------------ options
def add_algorithm_option(p: argparse.ArgumentParser) -> None:
    """``--algorithm``: the base SSL algorithm (the strategy's ``algorithm=``)."""
    p.add_argument(
        "--algorithm",
        default="softmatch",
        choices=ALGORITHMS,
        help="base SSL algorithm: FixMatch (threshold 0.95), SoftMatch (truncated "
        "Gaussian weights, uniform alignment) or FlexMatch (curriculum "
        "thresholds) (default: %(default)s)",
    )


def add_ssl_batch_options(p: argparse.ArgumentParser) -> None:
    """``--batch-size`` (the labeled batch ``B``) and ``--mu`` (the unlabeled
    batch is ``mu * B``): the strategy's ``train_mb_size=`` and ``mu=``."""
    add_batch_size_option(p, 16, "labeled batch size B")
    p.add_argument(
        "--mu",
        type=int,
        default=7,
        help="unlabeled batch size as a multiple of B (default: %(default)s)",
    )


# ------------------------------------------------------- CalibrateMix
def add_calibratemix_options(p: argparse.ArgumentParser) -> None:
    """``--calibratemix MODE`` and the ``--calibratemix-*`` options of the plugin."""
    p.add_argument(
        "--calibratemix",
        default="off",
        choices=("off", "fast", "faithful"),
        help="CalibrateMix: off; fast (mixed samples join the main forward, one "
        "backward); faithful (the release's second forward and L1 + L2 "
        "objective) (default: %(default)s)",
    )
    p.add_argument(
        "--calibratemix-warmup",
        type=float,
        default=RELEASE_WARMUP_FRACTION,
        help="CalibrateMix warm-up: a fraction of --iterations if < 1, else a "
        "number of iterations (default: the release's 150000/2^20 = %(default).4f)",
    )
    p.add_argument(
        "--calibratemix-alpha",
        type=float,
        default=None,
        help="Beta(alpha, alpha) of the mixing coefficients (default: the "
        "plugin's value for --algorithm, ssl_ext.calibratemix_plugin."
        "ALGORITHM_DEFAULTS)",
    )
    p.add_argument(
        "--calibratemix-weight",
        type=float,
        default=None,
        help="weight of the mixed loss (default: the plugin's value for --algorithm)",
    )
    p.add_argument(
        "--calibratemix-double-base",
        default="auto",
        choices=("auto", "on", "off"),
        help="count the base SSL loss twice (the release's L1 + L2); auto: on "
        "in faithful mode, off in fast mode (default: %(default)s)",
    )
    p.add_argument(
        "--calibratemix-k-fraction",
        type=float,
        default=0.05,
        help="least-similar candidates as a fraction of the unlabeled batch; "
        "1.0 draws partners uniformly among all of the required kind (an "
        "ablation of the dissimilar pairing) (default: %(default)s)",
    )
    p.add_argument(
        "--calibratemix-split",
        default="dynamics",
        choices=("dynamics", "random"),
        help="easy/hard split from AUM/APM, or at random (an ablation) "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--calibratemix-loss",
        default=None,
        choices=("bce", "ce"),
        help="loss of the mixed samples: sigmoid BCE as released, or softmax CE "
        "(default: the plugin's value for --algorithm)",
    )


def add_record_options(p: argparse.ArgumentParser) -> None:
    """``--results-jsonl FILE`` and ``--heldout-per-class N``: the raw result
    line of each run (:mod:`ssl_ext.experiments.records`) and the held-out
    labeled split the temperature-scaling comparison is also fitted on."""
    p.add_argument(
        "--results-jsonl",
        default=None,
        metavar="FILE",
        help="append one JSON line per run (configuration, seed, split, version, "
        "commit, metrics, diagnostics) to FILE",
    )
    p.add_argument(
        "--heldout-per-class",
        type=int,
        default=10,
        help="labeled images per class drawn from the validation split (never "
        "trained on) to fit a temperature on, besides the labeled samples; 0 "
        "turns it off; only with --eval-on test and --val-size (default: "
        "%(default)s)",
    )


def calibratemix_from_args(
    args: argparse.Namespace, seed: int
) -> CalibrateMixPlugin | None:
    """The plugin the options of :func:`add_calibratemix_options` ask for
    (``None`` for ``--calibratemix off``); a warm-up >= 1 counts iterations."""
    if args.calibratemix == "off":
        return None
    warmup = args.calibratemix_warmup
    warmup = int(warmup) if warmup >= 1 else float(warmup)
    double = {"auto": None, "on": True, "off": False}[args.calibratemix_double_base]
    return CalibrateMixPlugin(
        mode=args.calibratemix,
        warmup=warmup,
        loss=args.calibratemix_loss,
        alpha=args.calibratemix_alpha,
        mix_weight=args.calibratemix_weight,
        double_base_loss=double,
        k_fraction=args.calibratemix_k_fraction,
        split_rule=args.calibratemix_split,
        seed=seed,
    )


def calibratemix_summary(cm: CalibrateMixPlugin) -> dict:
    """What a result file records of a CalibrateMix run: mode, warm-up, APM
    coverage of the unlabeled pool and the last experience's split."""
    count = cm.apm.count.float()
    return {
        "mode": cm.mode,
        "config": plugin_config(cm),
        "double_base_loss": cm.double_base_loss,
        "warmup_iterations": cm.warmup_iterations,
        "mixing_iterations": max(0, cm.iteration - cm.warmup_iterations),
        "unlabeled_pool": int(count.numel()),
        "apm_updates_per_sample": {
            "mean": float(count.mean()),
            "min": int(count.min()),
            "median": float(count.median()),
        },
        "split": cm.history[-1] if cm.history else None,
    }


# --------------------------------------------------------- diagnostics
class PseudoLabelMonitor(SupervisedPlugin):
    """Diagnostics only (never used for training): quality of the pseudo-labels.

    Per iteration, from the true labels of the unlabeled training images
    (``truth``, indexed by ``mb_ulb_index``): pseudo-label accuracy, the
    mean weight (mask rate for FixMatch), and, with CalibrateMix mixing, the
    pseudo-label accuracy of the unlabeled samples its median split calls
    easy and hard (does the APM separate right from wrong pseudo-labels?).

    :param truth: true labels of the unlabeled dataset, by index.
    :param calibratemix: the run's :class:`CalibrateMixPlugin`, if any.
    """

    NAMES = ("pseudo_label_accuracy", "mean_weight", "easy_accuracy", "hard_accuracy")

    def __init__(self, truth: Tensor, calibratemix: CalibrateMixPlugin | None = None):
        super().__init__()
        self.truth = truth
        self.cm = calibratemix
        self.rows: list[tuple] = []

    def before_backward(self, strategy, **kwargs):
        idx = strategy.mb_ulb_index
        right = (strategy.mb_pseudo_labels == self.truth.to(idx.device)[idx]).float()
        easy_acc = hard_acc = float("nan")
        cm = self.cm
        if cm is not None and cm.mixed is not None:
            # the split CalibrateMix used this iteration
            split = cm.mixed.split
            easy, hard = split.unlabeled_easy, split.unlabeled_hard
            if bool(easy.any()):
                easy_acc = float(right[easy].mean())
            if bool(hard.any()):
                hard_acc = float(right[hard].mean())
        mean_weight = float(strategy.mb_mask.float().mean())
        self.rows.append((float(right.mean()), mean_weight, easy_acc, hard_acc))

    def summary(self, chunks: int = 10) -> dict:
        """Means over ``chunks`` consecutive blocks of iterations (nan-aware)."""
        if not self.rows:
            return {}
        arr = np.asarray(self.rows, dtype=float)
        blocks = np.array_split(arr, min(chunks, len(arr)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = [np.nanmean(b, axis=0) for b in blocks]
        out = {
            name: [None if np.isnan(m[i]) else round(float(m[i]), 4) for m in means]
            for i, name in enumerate(self.NAMES)
        }
        out["block_iterations"] = [len(b) for b in blocks]
        return out


__all__ = [
    "PseudoLabelMonitor",
    "add_algorithm_option",
    "add_record_options",
    "add_calibratemix_options",
    "add_ssl_batch_options",
    "calibratemix_from_args",
    "calibratemix_summary",
    "cosine_schedule",
]
