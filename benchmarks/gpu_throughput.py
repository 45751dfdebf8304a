"""Training iterations per second on a GPU (or the CPU), with AMP and channels_last.

Two workloads, each timed as a real Avalanche training loop (data loading
included, evaluation excluded) after warm-up iterations:

* ``ssl``: :class:`ssl_ext.SemiSupervisedStrategy` (FixMatch) with a
  WideResNet-28-2 (``ssl_ext.create_backbone("wrn28_2")``), labeled batch 64,
  ``mu`` = 7 (448 unlabeled images, weak and strong views), without and with
  ``CalibrateMixPlugin(mode="fast")``;
* ``er``: ``Naive`` + ``ReplayPlugin`` with ``MixupPlugin`` and
  ``GradMixPlugin`` on a timm ``resnet18``, batch 128, timed on the second
  experience (the buffer holds the first, so GradMix scores pairs).

On CUDA every variant runs in float32, bfloat16 autocast and float16
autocast with a ``torch.amp.GradScaler``, with the model and inputs in
``channels_last``; on the CPU in float32 only (``--precisions`` overrides).
On CUDA, each variant then trains one more iteration under
``torch.cuda.set_sync_debug_mode("error")`` to show where a training step
makes the host wait for the device; the sites found are compared with the
documented ones (``DOCUMENTED_SYNCS``) and listed in the table.

    python benchmarks/gpu_throughput.py                 # every part, defaults
    python benchmarks/gpu_throughput.py --parts ssl --iterations 100

Images are 3 x 32 x 32 like CIFAR: ``--data digits`` (default, always
available: scikit-learn's real 8x8 digits upscaled; the content does not
change the cost) or ``--data cifar10 --dataset-root DIR`` (torchvision's
files). A tiny CPU run (``--device cpu --iterations 2 --warmup 1
--ssl-batch 2 --mu 2 --er-batch 4``) is part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import traceback
import warnings
from pathlib import Path

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message="no QP solver found", category=UserWarning
    )
    import torch
    import torch.nn.functional as F
    from avalanche.benchmarks import nc_benchmark
    from avalanche.core import SupervisedPlugin
    from avalanche.training import Naive
    from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
    from torch.utils.data import TensorDataset

    import ssl_ext
    from avalanche_mixplugins import GradMixPlugin, MixupPlugin
    from avalanche_mixplugins.models import make_model

PRECISIONS = ("fp32", "bf16", "fp16")

DOCUMENTED_SYNCS = {
    "avalanche_mixplugins/plugins/base.py": "mixing plugins: non-finite check of "
    "the mixed loss, one per step (docs/bad_input.md)",
    "ssl_ext/strategy.py": "SSL strategy: label range, once per experience "
    "(docs/bad_input.md)",
    "ssl_ext/pseudo_labelling.py": "SSL strategy: non-finite check of the "
    "unlabeled logits, one per step (docs/bad_input.md)",
    "ssl_ext/amp_ema.py": "SSL strategy: non-finite check of the loss and "
    "gradients, one per step (docs/bad_input.md)",
    "ssl_ext/calibratemix_plugin.py": "CalibrateMix: easy/hard split "
    "(docs/calibratemix.md, host synchronisation)",
    "ssl_ext/calibratemix.py": "CalibrateMix: easy/hard split "
    "(docs/calibratemix.md, host synchronisation)",
    "ssl_ext/dynamics.py": "CalibrateMix trackers (docs/calibratemix.md)",
    "torch/amp/grad_scaler.py": "GradScaler: inf/NaN check before the "
    "optimizer step (fp16 only, inherent to loss scaling)",
}
"""Files where a training step is documented to wait for the device."""


# ---------------------------------------------------------------------------
# Avalanche pieces: timing, AMP for Naive, sync check
# ---------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Throughput(SupervisedPlugin):
    """Time ``iterations`` training iterations after ``warmup``, then stop.

    Put it last. The clock starts at the end of the warm-up iterations and
    stops at the end of the timed ones, with a device synchronisation at both
    ends, so data loading between iterations is included and queued GPU work
    is not missed.

    :param warmup: iterations before the clock starts.
    :param iterations: timed iterations.
    :param device: the training device.
    """

    def __init__(self, *, warmup: int, iterations: int, device: torch.device):
        super().__init__()
        self.warmup, self.iterations, self.device = warmup, iterations, device
        self.count = 0
        self.start = self.seconds = None

    def after_training_iteration(self, strategy, **kwargs):
        self.count += 1
        if self.count == self.warmup:
            _sync(self.device)
            self.start = time.perf_counter()
        elif self.count == self.warmup + self.iterations:
            _sync(self.device)
            self.seconds = time.perf_counter() - self.start
            strategy.stop_training()

    @property
    def per_second(self) -> float:
        return self.iterations / self.seconds


class SyncCheck(SupervisedPlugin):
    """Arm ``torch.cuda.set_sync_debug_mode`` for one training iteration.

    The mode (``"error"``: raise on the first host-device synchronisation,
    ``"warn"``: warn at each) is on from ``before_training_iteration`` to
    ``after_training_iteration`` of the iteration after ``skip`` others (the
    first ones initialise lazily), when the batch is already on the device;
    then training stops. Put it last.

    :param mode: ``"error"`` or ``"warn"``.
    :param skip: iterations trained before the checked one.
    """

    def __init__(self, *, mode: str = "error", skip: int = 1):
        super().__init__()
        self.mode, self.skip, self.count = mode, skip, 0

    def before_training_iteration(self, strategy, **kwargs):
        if self.count == self.skip:
            torch.cuda.set_sync_debug_mode(self.mode)

    def after_training_iteration(self, strategy, **kwargs):
        if self.count == self.skip:
            torch.cuda.set_sync_debug_mode(0)
            strategy.stop_training()
        self.count += 1


class Autocast(SupervisedPlugin):
    """``torch.autocast`` from ``before_forward`` to the end of ``before_backward``.

    Covers the strategy's forward and loss and the mixed-sample forward and
    loss that mixing plugins add in ``before_backward``: put it after them.
    """

    def __init__(self, *, device: torch.device, dtype: torch.dtype):
        super().__init__()
        self.device, self.dtype = device, dtype
        self._ctx = None

    def before_forward(self, strategy, **kwargs):
        if strategy.is_training and self._ctx is None:
            self._ctx = torch.autocast(self.device.type, dtype=self.dtype)
            self._ctx.__enter__()

    def before_backward(self, strategy, **kwargs):
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx = None


class ChannelsLast(SupervisedPlugin):
    """Inputs in ``channels_last`` (the model is converted once, at build)."""

    def before_forward(self, strategy, **kwargs):
        x = strategy.mbatch[0]
        if x.dim() == 4:
            strategy.mbatch[0] = x.contiguous(memory_format=torch.channels_last)


class ScaledNaive(Naive):
    """``Naive`` whose backward and step go through a ``torch.amp.GradScaler``."""

    def __init__(self, *, scaler: torch.amp.GradScaler | None = None, **kwargs):
        super().__init__(**kwargs)
        self.scaler = scaler

    def backward(self):
        if self.scaler is None:
            return super().backward()
        self.scaler.scale(self.loss).backward(retain_graph=self.retain_graph)

    def optimizer_step(self):
        if self.scaler is None:
            return super().optimizer_step()
        self.scaler.step(self.optimizer)
        self.scaler.update()


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def load_images(args) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Real images as float ``(N, 3, S, S)`` in [0, 1] and int64 labels."""
    if args.data == "cifar10":
        if args.dataset_root is None:
            raise SystemExit("error: --data cifar10 needs --dataset-root DIR")
        from torchvision.datasets import CIFAR10

        try:
            data = CIFAR10(args.dataset_root, train=True, download=False)
        except RuntimeError as exc:
            raise SystemExit(
                f"error: CIFAR-10 not found in --dataset-root {args.dataset_root} "
                f"({exc}); torchvision.datasets.CIFAR10(DIR, download=True) "
                "fetches it when a network is available"
            ) from None
        x = torch.from_numpy(data.data).permute(0, 3, 1, 2).float().div(255)
        y = torch.as_tensor(data.targets, dtype=torch.int64)
        what = "CIFAR-10 train split"
    else:
        from avalanche_mixplugins.benchmarks import load_digits_tensors

        x, y, _, _ = load_digits_tensors(seed=0)
        x = x.expand(-1, 3, -1, -1)
        what = "scikit-learn digits (real 8x8 images, upscaled)"
    size = args.image_size
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.contiguous(), y, f"{what}, 3x{size}x{size}"


def _dataset(x, y):
    ds = TensorDataset(x, y)
    ds.targets = y.tolist()
    return ds


# ---------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------


def _amp_dtype(precision: str):
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def run_ssl(args, variant, precision, device, x, y, *, sync_check=None):
    torch.manual_seed(0)
    bench = nc_benchmark(
        _dataset(x[: len(x) // 2], y[: len(x) // 2]),
        _dataset(x[:64], y[:64]),
        1,
        task_labels=False,
        seed=0,
    )
    model = ssl_ext.create_backbone(
        args.ssl_backbone, num_classes=10, in_chans=3, pretrained=False
    )
    clock = (
        SyncCheck(mode=sync_check)
        if sync_check
        else Throughput(warmup=args.warmup, iterations=args.iterations, device=device)
    )
    plugins = [clock]
    if variant == "calibratemix-fast":
        plugins.insert(0, ssl_ext.CalibrateMixPlugin(mode="fast", warmup=0, seed=0))
    amp = {"fp32": False, "bf16": "bf16", "fp16": "fp16"}[precision]
    strategy = ssl_ext.SemiSupervisedStrategy(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9),
        unlabeled=TensorDataset(x),
        algorithm="fixmatch",
        mu=args.mu,
        train_mb_size=args.ssl_batch,
        train_iterations=args.warmup + args.iterations + 1,
        views=ssl_ext.SSLViews(),
        amp=amp,
        channels_last=device.type == "cuda",
        device=device,
        plugins=plugins,
        evaluator=EvaluationPlugin(),
    )
    strategy.train(bench.train_stream[0])
    return clock


def run_er(args, variant, precision, device, x, y, *, sync_check=None):
    torch.manual_seed(0)
    n = len(x) // 2
    bench = nc_benchmark(
        _dataset(x[:n], y[:n]),
        _dataset(x[n:], y[n:]),
        2,
        task_labels=False,
        seed=0,
    )
    model = make_model(args.er_model, num_classes=10, in_chans=3).to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    mixer = GradMixPlugin(seed=0) if variant == "er+gradmix" else MixupPlugin(seed=0)
    plugins = [ReplayPlugin(mem_size=args.mem_size), mixer]
    if channels_last:
        plugins.insert(0, ChannelsLast())
    dtype = _amp_dtype(precision)
    if dtype is not None:
        plugins.append(Autocast(device=device, dtype=dtype))
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    strategy = ScaledNaive(
        scaler=scaler,
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        train_mb_size=args.er_batch,
        train_epochs=1_000_000,
        device=device,
        plugins=plugins,
        evaluator=EvaluationPlugin(),
    )
    # first experience: a few iterations, then the buffer holds its samples
    warm = Throughput(warmup=1, iterations=max(1, args.warmup), device=device)
    strategy.plugins.append(warm)
    strategy.train(bench.train_stream[0])
    strategy.plugins.remove(warm)
    clock = (
        SyncCheck(mode=sync_check)
        if sync_check
        else Throughput(warmup=args.warmup, iterations=args.iterations, device=device)
    )
    strategy.plugins.append(clock)
    strategy.train(bench.train_stream[1])
    return clock


WORKLOADS = {
    "ssl": (run_ssl, ("fixmatch", "calibratemix-fast")),
    "er": (run_er, ("er+mixup", "er+gradmix")),
}


def _relative(path: str) -> str:
    path = path.replace(os.sep, "/")
    for marker in ("avalanche_mixplugins/", "ssl_ext/", "torch/", "avalanche/"):
        if marker in path:
            return marker + path.split(marker, 1)[1]
    return path


def _classify(filename: str, lineno: int) -> dict:
    where = f"{_relative(filename)}:{lineno}"
    return {
        "site": where,
        "why": DOCUMENTED_SYNCS.get(where.rsplit(":", 1)[0], "UNDOCUMENTED"),
    }


def _reset_autocast() -> None:
    # an error inside an autocast region leaves it entered
    for device_type in ("cuda", "cpu"):
        torch.set_autocast_enabled(device_type, False)


def sync_sites(runner, args, variant, precision, device, x, y) -> dict:
    """Where one training iteration makes the host wait for the device.

    First the iteration runs under ``set_sync_debug_mode("error")``: either
    it completes (no synchronisation at all) or the first synchronising call
    raises, and its Python frame is reported. Then it runs again under
    ``"warn"`` to list every synchronising site of the step.
    """
    first = None
    try:
        runner(args, variant, precision, device, x, y, sync_check="error")
    except RuntimeError as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        ours = [f for f in frames if "site-packages/torch/" not in f.filename]
        frame = (ours or frames)[-1]
        first = _classify(frame.filename, frame.lineno)
        first["error"] = str(exc).splitlines()[0][:120]
    finally:
        torch.cuda.set_sync_debug_mode(0)
        _reset_autocast()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            runner(args, variant, precision, device, x, y, sync_check="warn")
        finally:
            torch.cuda.set_sync_debug_mode(0)
    sites = {}
    for w in caught:
        if "synchroniz" in str(w.message).lower():
            site = _classify(w.filename, w.lineno)
            sites[site["site"]] = site
    return {"error_mode": first or "no synchronisation", "all": list(sites.values())}


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--parts",
        nargs="+",
        choices=tuple(WORKLOADS),
        default=list(WORKLOADS),
        help="workloads to time (default: both)",
    )
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="torch device (default: %(default)s)",
    )
    p.add_argument(
        "--precisions",
        nargs="+",
        choices=PRECISIONS,
        default=None,
        help="fp32, bf16 (autocast), fp16 (autocast + GradScaler) "
        "(default: all three on CUDA, fp32 on the CPU)",
    )
    p.add_argument(
        "--iterations", type=int, default=50, help="timed iterations (default: 50)"
    )
    p.add_argument(
        "--warmup", type=int, default=10, help="untimed iterations first (default: 10)"
    )
    p.add_argument(
        "--ssl-batch", type=int, default=64, help="labeled batch B (default: 64)"
    )
    p.add_argument("--mu", type=int, default=7, help="unlabeled = mu x B (default: 7)")
    p.add_argument(
        "--ssl-backbone", default="wrn28_2", help="timm name (default: wrn28_2)"
    )
    p.add_argument("--er-batch", type=int, default=128, help="ER batch (default: 128)")
    p.add_argument(
        "--er-model", default="resnet18", help="timm name (default: resnet18)"
    )
    p.add_argument(
        "--mem-size", type=int, default=500, help="replay buffer (default: 500)"
    )
    p.add_argument(
        "--data",
        choices=("digits", "cifar10"),
        default="digits",
        help="digits: scikit-learn's real digits upscaled to 3x32x32 (always "
        "available); cifar10: torchvision's files in --dataset-root",
    )
    p.add_argument("--dataset-root", default=None, help="for --data cifar10")
    p.add_argument(
        "--image-size", type=int, default=32, help="image side (default: 32)"
    )
    p.add_argument(
        "--no-sync-check",
        action="store_true",
        help="skip the CUDA synchronisation check",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=max(1, min(4, os.cpu_count() or 1)),
        help="torch CPU threads (default: min(4, CPUs) = %(default)s)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write rows here")
    return p


def main(argv=None) -> list[dict]:
    p = parser()
    args = p.parse_args(argv)
    for name in ("iterations", "warmup", "ssl_batch", "mu", "er_batch", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but torch sees no CUDA device")
    precisions = args.precisions or (
        list(PRECISIONS) if device.type == "cuda" else ["fp32"]
    )
    if "fp16" in precisions and device.type != "cuda":
        p.error("fp16 needs CUDA (GradScaler); use bf16 or fp32 on the CPU")
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    x, y, what = load_images(args)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "-"
    print(
        f"device {device} ({gpu}), torch {torch.__version__}, python "
        f"{platform.python_version()}, threads {torch.get_num_threads()}\n"
        f"data: {what}; {args.warmup} warm-up + {args.iterations} timed iterations; "
        f"channels_last {'on' if device.type == 'cuda' else 'off'}\n",
        flush=True,
    )
    rows = []
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No loggers specified")
            show = warnings.showwarning

            def showwarning(message, category, *rest, **kwargs):
                # Avalanche's @deprecated re-enables itself on every call, so
                # its ReplayPlugin warning is dropped here instead of filtered
                if category is DeprecationWarning and "deprecated" in str(message):
                    return
                show(message, category, *rest, **kwargs)

            warnings.showwarning = showwarning
            for part in args.parts:
                runner, variants = WORKLOADS[part]
                for variant in variants:
                    for precision in precisions:
                        clock = runner(args, variant, precision, device, x, y)
                        row = {
                            "part": part,
                            "variant": variant,
                            "precision": precision,
                            "batch": (
                                f"{args.ssl_batch} + {args.mu}x{args.ssl_batch}"
                                if part == "ssl"
                                else str(args.er_batch)
                            ),
                            "model": args.ssl_backbone
                            if part == "ssl"
                            else args.er_model,
                            "it_per_s": clock.per_second,
                        }
                        if device.type == "cuda" and not args.no_sync_check:
                            row["syncs"] = sync_sites(
                                runner, args, variant, precision, device, x, y
                            )
                        rows.append(row)
                        print(_format_row(row), flush=True)
    finally:
        torch.set_num_threads(threads_before)
    undocumented = [
        s["site"]
        for r in rows
        for s in r.get("syncs", {}).get("all", [])
        if s["why"] == "UNDOCUMENTED"
    ]
    if device.type == "cuda" and not args.no_sync_check:
        print(
            "\nsync check: "
            + (
                "every synchronising call of a training step is documented"
                if not undocumented
                else f"UNDOCUMENTED synchronisation at {sorted(set(undocumented))}"
            )
        )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))
    return rows


def _format_row(row: dict) -> str:
    text = (
        f"{row['part']:>3} {row['variant']:<18} {row['precision']:<4} "
        f"{row['model']:<9} batch {row['batch']:<9} {row['it_per_s']:8.2f} it/s"
    )
    syncs = row.get("syncs")
    if syncs:
        first = syncs["error_mode"]
        if isinstance(first, dict):
            text += (
                f"\n      error mode: first sync at {first['site']} ({first['why']})"
            )
        else:
            text += f"\n      error mode: {first}"
        for site in syncs["all"]:
            text += f"\n      sync at {site['site']}: {site['why']}"
    return text


if __name__ == "__main__":
    main()
