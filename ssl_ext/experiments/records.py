"""Raw results of semi-supervised runs: one JSON line per run.

A line (:func:`run_record`) holds everything a table needs and what produced
it: the method, the split evaluated (``"val"`` or ``"test"``), the seed, the
full configuration (the run's options and CalibrateMix's resolved
arguments), the package version and git commit, the metrics (accuracy, ECE
with 15 and 10 bins, MCE, NLL, Brier, temperature scaling) and the split and
pseudo-label diagnostics. ``benchmarks/ssl_protocol_summary.py`` rebuilds
the tables of ``docs/results_ssl.md`` from such lines.

Also here: the logits of the evaluated model on some images
(:func:`eval_logits`) and the temperature-scaling comparison of a run
(:func:`temperature_scaling_results`, :mod:`ssl_ext.temperature_scaling`).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import torch
from torch import Tensor

from avalanche_mixplugins import __version__
from avalanche_mixplugins.calibration import ExpectedCalibrationError
from ssl_ext.temperature_scaling import fit_temperature

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
    cfg = result["config"]
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
    return {
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
    "append_record",
    "eval_logits",
    "git_state",
    "load_records",
    "plugin_config",
    "run_record",
    "temperature_scaling_results",
]
