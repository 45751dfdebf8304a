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

import json
import platform
from pathlib import Path

from avalanche_mixplugins.experiments.runs import (
    add_device_option,
    add_threads_option,
    default_threads,
    known_warnings_silenced,
    script_parser,
    torch_threads,
)

with known_warnings_silenced():
    import torch
    import torch.nn.functional as F
    from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
    from torch.utils.data import TensorDataset

    import avalanche_mixplugins
    import ssl_ext
    from avalanche_mixplugins import GradMixPlugin, MixupPlugin
    from avalanche_mixplugins.experiments.datasets import load_digits_tensors
    from avalanche_mixplugins.experiments.gpu import (
        Autocast,
        ChannelsLast,
        ScaledNaive,
        SyncCheck,
        classify_sync_site,
        record_sync_sites,
    )
    from avalanche_mixplugins.experiments.streams import (
        class_incremental_from_tensors,
    )
    from avalanche_mixplugins.experiments.timing import Throughput
    from avalanche_mixplugins.models import make_model

PRECISIONS = ("fp32", "bf16", "fp16")


def _site(module, path: str, text: str) -> str:
    """``path:line`` of the first line of ``path`` (relative to the directory
    holding ``module``'s package) that contains ``text``."""
    root = Path(module.__file__).resolve().parent.parent
    for number, line in enumerate((root / path).read_text().splitlines(), 1):
        if text in line:
            return f"{path}:{number}"
    raise RuntimeError(f"{text!r} is no longer in {path}: update DOCUMENTED_SYNCS")


_ONCE = "once per experience, in its first iteration"
DOCUMENTED_SYNCS = {
    _site(
        ssl_ext, "ssl_ext/strategy.py", "int(self.mb_y.max()) >= n_out"
    ): f"SSL strategy: labels checked against the outputs, {_ONCE} (docs/bad_input.md)",
    _site(
        ssl_ext, "ssl_ext/amp_ema.py", "if bool(ok):"
    ): "SSL strategy: finite check of the step that creates the optimizer "
    f"state (after the optimizer is reset), {_ONCE} (docs/gpu.md)",
    _site(
        avalanche_mixplugins, "avalanche_mixplugins/validation.py", "top = int(y.max())"
    ): f"mixing plugins: labels checked against the outputs, {_ONCE}",
    _site(
        avalanche_mixplugins,
        "avalanche_mixplugins/validation.py",
        "or int(y.min()) < 0:",
    ): f"mixing plugins: labels checked against the outputs, {_ONCE}",
    _site(
        torch, "torch/amp/grad_scaler.py", 'found_inf_per_device"].values()'
    ): "GradScaler: inf/NaN check before the optimizer step (fp16 only, every "
    "step, inherent to loss scaling; inside torch)",
}
"""Where a training iteration is documented to wait for the device, by
``file:line`` (found from the source text, so the lines follow edits), with
the reason: a synchronisation anywhere else, also at another line of these
files, is reported as UNDOCUMENTED."""


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
        x, y, _, _ = load_digits_tensors(seed=0)
        x = x.expand(-1, 3, -1, -1)
        what = "scikit-learn digits (real 8x8 images, upscaled)"
    size = args.image_size
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.contiguous(), y, f"{what}, 3x{size}x{size}"


# ---------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------


def _amp_dtype(precision: str):
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _around(plugins: list, around: tuple) -> list:
    """``plugins`` between the two plugins of ``around`` (first and last), if any."""
    return [around[0], *plugins, around[1]] if around else plugins


def run_ssl(args, variant, precision, device, x, y, *, sync_check=None, around=()):
    torch.manual_seed(0)
    half = len(x) // 2
    bench = class_incremental_from_tensors(
        x[:half], y[:half], x[:64], y[:64], n_experiences=1, seed=0
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
    plugins = _around(plugins, around)
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


def run_er(args, variant, precision, device, x, y, *, sync_check=None, around=()):
    torch.manual_seed(0)
    n = len(x) // 2
    bench = class_incremental_from_tensors(
        x[:n], y[:n], x[n:], y[n:], n_experiences=2, seed=0
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
    plugins = _around(plugins, around)
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


def _classify(filename: str, lineno: int) -> dict:
    return classify_sync_site(filename, lineno, DOCUMENTED_SYNCS)


def sync_sites(runner, args, variant, precision, device, x, y) -> dict:
    """Where one training iteration of ``runner`` makes the host wait for the device."""
    return record_sync_sites(
        lambda mode: runner(args, variant, precision, device, x, y, sync_check=mode),
        DOCUMENTED_SYNCS,
    )


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def parser():
    p = script_parser(__doc__)
    p.add_argument(
        "--parts",
        nargs="+",
        choices=tuple(WORKLOADS),
        default=list(WORKLOADS),
        help="workloads to time (default: both)",
    )
    add_device_option(p)
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
    add_threads_option(p, default_threads(), shown="min(4, CPUs) = %(default)s")
    p.add_argument("--json", type=Path, default=None, help="also write rows here")
    return p


def _time_workloads(args, device: torch.device, precisions: list[str]) -> list[dict]:
    """Time every part, variant and precision; print and return one row each."""
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
                    "model": args.ssl_backbone if part == "ssl" else args.er_model,
                    "it_per_s": clock.per_second,
                }
                if device.type == "cuda" and not args.no_sync_check:
                    row["syncs"] = sync_sites(
                        runner, args, variant, precision, device, x, y
                    )
                rows.append(row)
                print(_format_row(row), flush=True)
    return rows


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
    with torch_threads(args.threads), known_warnings_silenced():
        rows = _time_workloads(args, device, precisions)
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
