"""What a semi-supervised run adds around the strategy: schedule, CalibrateMix
from the command line, result summaries and diagnostics.

* :func:`add_algorithm_option`, :func:`add_ssl_batch_options`: the base
  algorithm and the two batch sizes from the command line;
* :func:`cosine_schedule`: the USB recipe's learning-rate decay;
* :func:`add_calibratemix_options` and :func:`calibratemix_from_args`:
  :class:`~ssl_ext.calibratemix_plugin.CalibrateMixPlugin` from a command
  line; :func:`calibratemix_summary`: what a result file records of it;
* :class:`PseudoLabelMonitor`: the quality of the pseudo-labels, measured
  against the true labels of the unlabeled images, never used for training;
* :func:`run_record`: the raw result of a run as one JSON line (the method,
  split, seed, full configuration with CalibrateMix's resolved arguments,
  package version and git commit, metrics including the temperature-scaling
  comparison of :func:`temperature_scaling_results`, split and pseudo-label
  diagnostics); ``benchmarks/ssl_protocol_summary.py`` rebuilds the tables
  of ``docs/results_ssl.md`` from such lines.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import warnings
from pathlib import Path

import numpy as np
import torch
from avalanche.core import SupervisedPlugin
from torch import Tensor

from avalanche_mixplugins import __version__
from avalanche_mixplugins.calibration import ExpectedCalibrationError, fit_temperature
from avalanche_mixplugins.experiments.runs import add_batch_size_option
from ssl_ext.algorithms import ALGORITHMS
from ssl_ext.calibratemix_plugin import RELEASE_WARMUP_FRACTION, CalibrateMixPlugin


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
    line of each run (:mod:`ssl_ext.experiments.runs`) and the held-out
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

    :param truth: true labels of the unlabeled dataset, by index; or one
        such tensor per experience (indexed by ``current_experience``), for a
        stream with an unlabeled dataset per experience.
    :param calibratemix: the run's :class:`CalibrateMixPlugin`, if any.
    """

    NAMES = ("pseudo_label_accuracy", "mean_weight", "easy_accuracy", "hard_accuracy")

    def __init__(
        self,
        truth: Tensor | list[Tensor],
        calibratemix: CalibrateMixPlugin | None = None,
    ):
        super().__init__()
        self.truth = truth
        self.cm = calibratemix
        self.rows: list[tuple] = []

    def before_backward(self, strategy, **kwargs):
        idx = strategy.mb_ulb_index
        truth = self.truth
        if not isinstance(truth, Tensor):
            truth = truth[strategy.experience.current_experience]
        right = (strategy.mb_pseudo_labels == truth.to(idx.device)[idx]).float()
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


# ------------------------------------------------ raw results (JSONL)
SCHEMA = 1
"""Version of the line layout."""


def git_state(path: str | Path | None = None) -> dict:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository
    holding ``path`` (default: this package's source)."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": sha, "dirty": bool(status)}


def plugin_config(cm) -> dict:
    """Every argument of a :class:`~ssl_ext.calibratemix_plugin.CalibrateMixPlugin`
    as it ran (per-algorithm ones resolved), and their sources."""
    return {
        "mode": cm.mode,
        "loss": cm.loss,
        "mix_weight": cm.mix_weight,
        "alpha": cm.alpha,
        "warmup": cm.warmup,
        "warmup_iterations": cm.warmup_iterations,
        "k_fraction": cm.k_fraction,
        "apm_delta": cm.apm_delta,
        "double_base_loss": cm.double_base_loss,
        "min_apm_updates": cm.min_apm_updates,
        "split_rule": cm.split_rule,
        "apm_dtype": str(cm.apm_dtype).replace("torch.", ""),
        "seed": cm.seed,
        "requested": dict(cm.requested),
        "resolved_from": dict(cm.resolved_from or {}),
    }


def _config_from_options(cfg: dict, cm: dict, seed: int) -> dict:
    return {
        "mode": cm["mode"],
        "loss": cfg["calibratemix_loss"],
        "mix_weight": cfg["calibratemix_weight"],
        "alpha": cfg["calibratemix_alpha"],
        "warmup": cfg["calibratemix_warmup"],
        "warmup_iterations": cm["warmup_iterations"],
        "k_fraction": cfg["calibratemix_k_fraction"],
        "apm_delta": 0.997,
        "double_base_loss": cm["double_base_loss"],
        "min_apm_updates": 1,
        "split_rule": cfg["calibratemix_split"],
        "apm_dtype": "float32",
        "seed": seed,
        "requested": {
            "loss": cfg["calibratemix_loss"],
            "mix_weight": cfg["calibratemix_weight"],
            "alpha": cfg["calibratemix_alpha"],
        },
        "resolved_from": {k: "explicit" for k in ("loss", "mix_weight", "alpha")},
    }


def _ece(logits: Tensor, labels: Tensor, n_bins: int = 15) -> float:
    metric = ExpectedCalibrationError(n_bins=n_bins)
    metric.update(logits, labels)
    return metric.result()


@torch.no_grad()
def eval_logits(strategy, x: Tensor, *, batch_size: int = 1000) -> Tensor:
    """Logits of the strategy's evaluated model (the EMA teacher if any) on
    images ``x``, with the eval view (normalisation only), on the CPU."""
    model = strategy._eval_model()
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size].to(strategy.device)
        out.append(strategy.model_forward(strategy.views.plain(xb), model).cpu())
    model.train(was_training)
    return torch.cat(out)


def temperature_scaling_results(
    test_logits: Tensor, test_labels: Tensor, fits: dict[str, tuple[Tensor, Tensor]]
) -> dict:
    """ECE of the evaluated logits without scaling and with a temperature
    fitted on each of ``fits`` (``name -> (logits, labels)``).

    :return: ``{"ece15_t1": ..., "ece10_t1": ..., name: {"temperature", "n",
        "fit_accuracy", "ece15", "ece10"}}``.
    """
    out = {
        "ece15_t1": _ece(test_logits, test_labels, 15),
        "ece10_t1": _ece(test_logits, test_labels, 10),
    }
    for name, (z, y) in fits.items():
        t = fit_temperature(z, y)
        out[name] = {
            "temperature": t,
            "n": int(y.numel()),
            "fit_accuracy": float((z.argmax(1) == y).double().mean()),
            "ece15": _ece(test_logits / t, test_labels, 15),
            "ece10": _ece(test_logits / t, test_labels, 10),
        }
    return out


def run_record(result: dict, *, git: dict | None = None) -> dict:
    """The JSON line of a run from the result dict of
    ``examples/semi_supervised.py`` (``git``: :func:`git_state` of the code
    that ran, default this checkout)."""
    cfg = dict(result["config"])
    for key in ("output_dir", "dataset_root", "results_jsonl"):  # no machine paths
        if cfg.get(key):
            cfg[key] = Path(cfg[key]).name
    cm = result.get("calibratemix") or {}
    if cm and cm.get("config") is None:
        # a result file written before the plugin's configuration was stored:
        # every CalibrateMix value then came from the command line
        cm = {**cm, "config": _config_from_options(cfg, cm, result["seed"])}
    calib = result.get("calibration", {})
    metrics = {
        "accuracy": result["final_average_accuracy"],
        "ece15": calib.get("ECE_Stream"),
        "ece10": calib.get("ECE10_Stream"),
        "mce15": calib.get("MCE_Stream"),
        "nll": calib.get("NLL_Stream"),
        "brier": calib.get("Brier_Stream"),
    }
    if result.get("temperature_scaling") is not None:
        metrics["temperature_scaling"] = result["temperature_scaling"]
    record = {
        "schema": SCHEMA,
        "kind": "semi_supervised",
        "method": result["method"],
        "setting": result["setting"],
        "algorithm": cfg["algorithm"],
        "calibratemix": cfg.get("calibratemix", "off"),
        "tag": cfg.get("tag", ""),
        "split": cfg.get("eval_on", "test"),
        "seed": result["seed"],
        "labels": cfg.get("labels"),
        "iterations": cfg.get("iterations"),
        "config": cfg,
        "calibratemix_config": cm.get("config"),
        "package": {"name": "avalanche-mixplugins", "version": __version__},
        "git": git if git is not None else git_state(),
        "versions": result.get("versions"),
        "metrics": metrics,
        "split_diagnostics": (
            None
            if not cm
            else {
                "apm_updates_per_sample": cm.get("apm_updates_per_sample"),
                "unlabeled_pool": cm.get("unlabeled_pool"),
                "mixing_iterations": cm.get("mixing_iterations"),
                **(cm.get("split") or {}),
            }
        ),
        "pseudo_label_diagnostics": result.get("diagnostics"),
        "near_chance": result.get("near_chance"),
        "time": {
            "wall_s": result.get("wall_time_s"),
            "train_s": result.get("train_time_s"),
            "per_iteration_s": result.get("time_per_iteration_s"),
        },
    }
    if result.get("continual") is not None:
        # a class-incremental stream: accuracy matrix, accuracy and ECE after
        # every experience (on the test classes seen so far)
        record["continual"] = result["continual"]
    return record


def append_record(path: str | Path, record: dict) -> None:
    """Append ``record`` as one line to the JSONL file ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def load_records(paths) -> list[dict]:
    """Every line of the JSONL files ``paths`` (blank lines skipped)."""
    out = []
    for p in paths:
        for line in Path(p).read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


__all__ = [
    "SCHEMA",
    "PseudoLabelMonitor",
    "append_record",
    "eval_logits",
    "git_state",
    "load_records",
    "plugin_config",
    "run_record",
    "temperature_scaling_results",
    "add_algorithm_option",
    "add_record_options",
    "add_calibratemix_options",
    "add_ssl_batch_options",
    "calibratemix_from_args",
    "calibratemix_summary",
    "cosine_schedule",
]
