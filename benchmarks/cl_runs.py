"""Small class-incremental runs for GradMix measurements (run by hand).

Shared by ``gradmix_sweep.py`` and ``gradmix_fidelity.py``: offline real
streams with an optional validation split carved from each class's training
images, a replay strategy with one mixing plugin, and the accuracy matrix of
every experience after every experience.

``split="val"`` trains on the training images minus a stratified held-out
part (``val_fraction`` of each class) and evaluates on that part: this is the
split on which defaults are chosen. ``split="test"`` trains on all training
images and evaluates on the official test images: the split results are
reported on.
"""

from __future__ import annotations

import inspect
import math
import subprocess
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from avalanche.training import DER, ER_ACE, Naive
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin

import avalanche_mixplugins
from avalanche_mixplugins import (
    CutMixPlugin,
    GradMixPlugin,
    MixupCutMixPlugin,
    MixupPlugin,
)
from avalanche_mixplugins.experiments.datasets import (
    load_digits_tensors,
    load_fashion_mnist_tensors,
    load_mnist5k_tensors,
)
from avalanche_mixplugins.experiments.streams import class_incremental_from_tensors
from avalanche_mixplugins.models import make_model

DATASETS = ("fashion_mnist", "mnist5k", "digits")
STRATEGIES = ("er", "er_ace", "der")
AUGS = (
    "none",
    "mixup",
    "cutmix",
    "switch",
    "kind_rule",
    "gradmix",
    "gradmix_mixup",
    "gradmix_cutmix",
    "gradmix_auto",
)
"""``gradmix`` is GradMix at its defaults; ``gradmix_<op>`` fixes the operation;
``switch`` is timm's per-step Mixup/CutMix switch; ``kind_rule`` is Mixup of
every pair with a buffer sample (``pairing="with_buffer"``)."""


@dataclass
class RunConfig:
    """One run: stream, strategy, augmentation and optimisation settings."""

    dataset: str = "fashion_mnist"
    per_class: int | None = 500
    """Training images kept per class (``None``: all)."""
    split: str = "val"
    val_fraction: float = 0.2
    strategy: str = "er"
    aug: str = "none"
    mem_size: int = 200
    epochs: int = 1
    lr: float = 0.03
    batch_size: int = 32
    seed: int = 0
    plugin_kwargs: dict = field(default_factory=dict)
    """Extra keyword arguments of the mixing plugin (ablations)."""
    tag: str = ""


def _tensors(dataset: str):
    if dataset == "fashion_mnist":
        return load_fashion_mnist_tensors(download=False)
    if dataset == "mnist5k":
        return load_mnist5k_tensors(seed=0)
    if dataset == "digits":
        return load_digits_tensors(seed=0)
    raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")


def stream(cfg: RunConfig):
    """The Avalanche benchmark of ``cfg`` (5 experiences of 2 classes)."""
    x_tr, y_tr, x_te, y_te = _tensors(cfg.dataset)
    gen = torch.Generator().manual_seed(1000 + cfg.seed)
    keep_tr, keep_ev = [], []
    for c in range(10):
        idx = torch.nonzero(y_tr == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        if cfg.per_class is not None:
            n_total = cfg.per_class
            if cfg.split == "val":
                n_total = int(round(cfg.per_class / (1 - cfg.val_fraction)))
            idx = idx[:n_total]
        if cfg.split == "val":
            n_val = int(round(cfg.val_fraction * idx.numel()))
            keep_ev.append(idx[:n_val])
            keep_tr.append(idx[n_val:])
        else:
            keep_tr.append(idx)
    tr = torch.cat(keep_tr)
    if cfg.split == "val":
        ev = torch.cat(keep_ev)
        x_ev, y_ev = x_tr[ev], y_tr[ev]
    elif cfg.split == "test":
        x_ev, y_ev = x_te, y_te
    else:
        raise ValueError(f"split must be 'val' or 'test', got {cfg.split!r}")
    x_train, y_train = x_tr[tr], y_tr[tr]
    mean, std = float(x_train.mean()), float(x_train.std())
    return class_incremental_from_tensors(
        (x_train - mean) / std,
        y_train,
        (x_ev - mean) / std,
        y_ev,
        n_experiences=5,
        seed=cfg.seed,
    )


def _plugin_call(cfg: RunConfig):
    """``(plugin class, keyword arguments)`` of ``cfg``'s mixing plugin, or ``None``."""
    kw = {"seed": cfg.seed, **cfg.plugin_kwargs}
    fixed = {
        "mixup": (MixupPlugin, {}),
        "cutmix": (CutMixPlugin, {}),
        "switch": (MixupCutMixPlugin, {}),
        "kind_rule": (MixupPlugin, {"pairing": "with_buffer"}),
        "gradmix": (GradMixPlugin, {}),
        "gradmix_mixup": (GradMixPlugin, {"mix": "mixup"}),
        "gradmix_cutmix": (GradMixPlugin, {"mix": "cutmix"}),
        "gradmix_auto": (GradMixPlugin, {"mix": "auto"}),
    }
    if cfg.aug == "none":
        return None
    if cfg.aug not in fixed:
        raise ValueError(f"aug must be one of {AUGS}, got {cfg.aug!r}")
    cls, extra = fixed[cfg.aug]
    return cls, {**kw, **extra}


def plugin_for(cfg: RunConfig):
    """The mixing plugin of ``cfg`` (``None`` for no augmentation)."""
    call = _plugin_call(cfg)
    return None if call is None else call[0](**call[1])


def resolved_plugin_arguments(cfg: RunConfig) -> dict | None:
    """Every constructor argument of ``cfg``'s plugin, defaults filled in."""
    call = _plugin_call(cfg)
    if call is None:
        return None
    cls, kw = call
    bound = inspect.signature(cls.__init__).bind(None, **kw)
    bound.apply_defaults()
    args = dict(bound.arguments)
    args.pop("self")
    return {"class": cls.__name__, **args}


def provenance() -> dict:
    """Package version and the git commit of the code (``+dirty`` if modified)."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        commit, dirty = "", ""
    return {
        "package_version": avalanche_mixplugins.__version__,
        "git_commit": commit + ("+dirty" if dirty else ""),
    }


def strategy_for(cfg: RunConfig, model, plugins):
    """Naive + ReplayPlugin (``er``), ``ER_ACE`` or ``DER``."""
    common = dict(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9),
        train_mb_size=cfg.batch_size,
        train_epochs=cfg.epochs,
        eval_mb_size=512,
        device="cpu",
        evaluator=EvaluationPlugin(loggers=[]),
    )
    if cfg.strategy == "er":
        return Naive(plugins=[ReplayPlugin(mem_size=cfg.mem_size), *plugins], **common)
    if cfg.strategy == "er_ace":
        return ER_ACE(
            mem_size=cfg.mem_size,
            batch_size_mem=cfg.batch_size,
            plugins=plugins,
            **common,
        )
    if cfg.strategy == "der":
        return DER(
            mem_size=cfg.mem_size,
            batch_size_mem=cfg.batch_size,
            plugins=plugins,
            **common,
        )
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {cfg.strategy!r}")


@torch.no_grad()
def accuracy_per_experience(model, bench) -> list[float]:
    """Accuracy of ``model`` on each evaluation experience."""
    model.eval()
    out = []
    for exp in bench.test_stream:
        loader = torch.utils.data.DataLoader(exp.dataset.eval(), batch_size=1024)
        correct = total = 0
        for x, y, *_ in loader:
            correct += int((model(x).argmax(1) == y).sum())
            total += y.numel()
        out.append(correct / total)
    return out


class LossTracker:
    """Training loss per iteration, for the collapse check (a plain plugin)."""

    def __init__(self):
        from avalanche.core import SupervisedPlugin

        tracker = self

        class _Plugin(SupervisedPlugin):
            def after_training_iteration(self, strategy, **kwargs):
                tracker.losses[-1].append(float(strategy.loss))

            def before_training_exp(self, strategy, **kwargs):
                tracker.losses.append([])

        self.losses: list[list[float]] = []
        self.plugin = _Plugin()


PROVENANCE = provenance()
"""Version and commit of the code this process imported (read once, at import)."""


def run(
    cfg: RunConfig, *, threads: int = 1, on_experience=None, extra_plugins=()
) -> dict:
    """Train the stream of ``cfg``; return accuracies, forgetting and losses.

    :param on_experience: optional ``callback(strategy, plugin, bench, i)``
        called after experience ``i`` (used by the fidelity benchmark).
    :param extra_plugins: callables ``make(mixing_plugin) -> SupervisedPlugin``
        whose plugins are added after the mixing plugin (so their
        ``before_backward`` sees its last mixed batch); used by diagnostics.
    """
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    bench = stream(cfg)
    model = make_model("small_cnn", num_classes=10, in_chans=1)
    plugin = plugin_for(cfg)
    tracker = LossTracker()
    plugins = [p for p in (plugin, tracker.plugin) if p is not None]
    plugins += [make(plugin) for make in extra_plugins]
    strategy = strategy_for(cfg, model, plugins)
    n = len(bench.train_stream)
    acc = np.zeros((n, n))
    start = time.perf_counter()
    for i, exp in enumerate(bench.train_stream):
        strategy.train(exp)
        acc[i] = accuracy_per_experience(strategy.model, bench)
        if on_experience is not None:
            on_experience(strategy, plugin, bench, i)
    final = float(acc[-1].mean())
    forgetting = float(np.mean([acc[j, j] - acc[-1, j] for j in range(n - 1)]))
    # an experience whose training loss did not fall is "stuck"
    stuck = []
    for losses in tracker.losses:
        k = max(1, len(losses) // 5)
        first, last = np.mean(losses[:k]), np.mean(losses[-k:])
        stuck.append(bool(not math.isfinite(last) or last > 0.9 * first))
    result = {
        "config": asdict(cfg),
        "plugin": resolved_plugin_arguments(cfg),
        **PROVENANCE,
        "accuracy_matrix": acc.tolist(),
        "final_accuracy": final,
        "forgetting": forgetting,
        "new_experience_accuracy": [float(acc[i, i]) for i in range(n)],
        "stuck_experiences": stuck,
        "max_loss": float(max(max(v) for v in tracker.losses)),
        "wall_s": time.perf_counter() - start,
    }
    if isinstance(plugin, GradMixPlugin):
        result["helpful_fraction"] = [h["helpful_fraction"] for h in plugin.history]
    return result


__all__ = ["AUGS", "DATASETS", "RunConfig", "STRATEGIES", "run", "stream"]
