"""What every example and benchmark script repeats around a run.

Command-line options with one spelling and one help text (device, threads,
seeds, logs), the torch thread count set for a run and restored after it,
third-party warnings known to be harmless silenced inside a run only, the
Avalanche loggers a run writes, and the software versions and calibration
numbers a result file records.

This module imports no Avalanche at import time, so a script can silence
Avalanche's import warnings with :func:`known_warnings_silenced` before
importing it.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import re
import statistics
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

KNOWN_HARMLESS_WARNINGS = (
    # qpsolvers finds no QP solver when Avalanche imports it (only GEM-style
    # strategies need one)
    {
        "message": "no QP solver found",
        "category": UserWarning,
        "module": r"qpsolvers(\.|$)",
    },
    # Avalanche 0.6 calls its own deprecated storage_policy.update from its
    # replay plugin and strategies (ReplayPlugin, ER_ACE, ER_AML)
    {
        "message": "Call to deprecated function update ",
        "category": DeprecationWarning,
        "module": r"avalanche\.training(\.|$)",
    },
    # quiet runs and timing runs have no loggers on purpose
    {
        "message": "No loggers specified",
        "category": UserWarning,
        "module": r"avalanche\.training\.plugins\.evaluation$",
    },
)
"""``warnings.filterwarnings`` arguments of the third-party warnings a run
hides: each names the message, the category and the module that warns. The
only ones the examples and the test suite raise (checked with ``-W default``);
this package's own warnings are never hidden. The test suite applies the same
list (``tests/conftest.py``)."""


def _module_of(filename: str) -> str:
    """Name of the imported module whose file is ``filename`` (or ``""``)."""
    for name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) == filename:
            return name
    return ""


def is_known_harmless(message, category, filename: str) -> bool:
    """Whether a warning matches one of :data:`KNOWN_HARMLESS_WARNINGS`, with
    the rules of ``warnings.filterwarnings`` (message and module matched at
    their start, the message case-insensitively)."""
    module = _module_of(filename)
    return any(
        issubclass(category, spec["category"])
        and re.match(spec["message"], str(message), re.IGNORECASE)
        and re.match(spec["module"], module)
        for spec in KNOWN_HARMLESS_WARNINGS
    )


@contextlib.contextmanager
def known_warnings_silenced() -> Iterator[None]:
    """Hide :data:`KNOWN_HARMLESS_WARNINGS` inside the ``with`` block only.

    Avalanche's ``@deprecated`` wrapper calls ``warnings.simplefilter("once")``
    on every call, which outranks any filter, so a warning that gets past the
    filters is checked again where it would be shown. Filters and
    ``warnings.showwarning`` are restored on exit, so importing or calling a
    script from other code changes nothing outside it.
    """
    with warnings.catch_warnings():
        for spec in KNOWN_HARMLESS_WARNINGS:
            warnings.filterwarnings("ignore", **spec)
        show = warnings.showwarning

        def showwarning(message, category, filename, lineno, file=None, line=None):
            if is_known_harmless(message, category, filename):
                return
            show(message, category, filename, lineno, file, line)

        warnings.showwarning = showwarning
        yield


def default_threads() -> int:
    """1: the examples' small models run as fast on one thread, and far faster
    on a busy machine (measured in ``docs/threads.md``).

    More threads help larger models on an idle machine: ``--threads N``.
    """
    return 1


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` torch intra-op threads (``None``: unchanged), then restore."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def script_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose ``--help`` shows the script's docstring as written.

    Options must be spelt out (``allow_abbrev=False``): a prefix such as
    ``--dataset`` is never taken for a longer option (``--dataset-root``).
    """
    return argparse.ArgumentParser(
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )


class UsageError(Exception):
    """A wrong command-line value found after parsing (a dataset, a model name).

    :func:`usage_errors` turns it into argparse's one-line ``error:`` message.
    """


@contextlib.contextmanager
def usage_errors(p: argparse.ArgumentParser) -> Iterator[None]:
    """Report a :class:`UsageError` raised in the block as ``p.error`` does
    (usage, then ``prog: error: message``; exit status 2), without a traceback."""
    try:
        yield
    except UsageError as exc:
        p.error(" ".join(str(exc).split()))


def add_device_option(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--device`` (default: CUDA when torch sees one, else the CPU)."""
    if default is None:
        default = "cuda" if torch.cuda.is_available() else "cpu"
    p.add_argument(
        "--device", default=default, help="torch device (default: %(default)s)"
    )


def add_threads_option(
    p: argparse.ArgumentParser, default: int | None, shown: str = "%(default)s"
) -> None:
    """``--threads``: torch intra-op CPU threads (``shown``: how help names the default)."""
    p.add_argument(
        "--threads",
        type=int,
        default=default,
        help=f"torch intra-op CPU threads (default: {shown}); more help large "
        "models on an idle machine, and slow small ones down a lot on a busy one",
    )


def add_seeds_option(p: argparse.ArgumentParser, help: str) -> None:
    """``--seeds``: one run per seed (default: seed 0)."""
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help=f"{help} (default: %(default)s)",
    )


def add_batch_size_option(p: argparse.ArgumentParser, default: int, what: str) -> None:
    """``--batch-size``; ``what`` says which batch it is."""
    p.add_argument(
        "--batch-size", type=int, default=default, help=f"{what} (default: %(default)s)"
    )


def add_output_option(p: argparse.ArgumentParser) -> None:
    """``--output-dir``: where a run writes its JSON result files."""
    p.add_argument(
        "--output-dir",
        default="results",
        help="where the JSON result files go (default: %(default)s)",
    )


def add_log_options(p: argparse.ArgumentParser) -> None:
    """``--csv`` and ``--tensorboard``: Avalanche's own logs beside the result files."""
    p.add_argument("--csv", action="store_true", help="also write Avalanche CSV logs")
    p.add_argument(
        "--tensorboard", action="store_true", help="also write TensorBoard logs"
    )


def add_quiet_option(p: argparse.ArgumentParser) -> None:
    """``--quiet``: no interactive logger (see :func:`make_loggers`)."""
    p.add_argument(
        "--quiet", action="store_true", help="no progress bars or metric logs"
    )


def add_run_options(
    p: argparse.ArgumentParser,
    *,
    seeds_help: str,
    threads: int | None,
    threads_shown: str = "%(default)s",
) -> None:
    """The options every run script has, in this order: ``--device``,
    ``--seeds``, ``--threads``, ``--output-dir``, ``--quiet``, ``--csv`` and
    ``--tensorboard``.

    :param seeds_help: what ``--seeds`` does in this script.
    :param threads: default of ``--threads`` (``None``: torch's choice).
    :param threads_shown: how ``--help`` names that default.
    """
    add_device_option(p)
    add_seeds_option(p, seeds_help)
    add_threads_option(p, threads, shown=threads_shown)
    add_output_option(p)
    add_quiet_option(p)
    add_log_options(p)


def make_loggers(args: argparse.Namespace, out: Path, tag: str) -> list:
    """The loggers of a run: interactive unless ``--quiet``, plus CSV/TensorBoard.

    CSV logs go to ``out/csv/tag``, TensorBoard logs to ``out/tb/tag``.
    """
    from avalanche.logging import CSVLogger, InteractiveLogger, TensorboardLogger

    loggers = [] if args.quiet else [InteractiveLogger()]
    if args.csv:
        loggers.append(CSVLogger(log_folder=str(out / "csv" / tag)))
    if args.tensorboard:
        loggers.append(TensorboardLogger(tb_log_dir=str(out / "tb" / tag)))
    return loggers


def close_loggers(loggers: list) -> None:
    """Flush and close the loggers that write files."""
    for logger in loggers:
        if hasattr(logger, "close"):
            logger.close()


def software_versions() -> dict[str, str]:
    """Python, torch, Avalanche and timm versions, for a result file."""
    import avalanche
    import timm

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "avalanche": getattr(avalanche, "__version__", "unknown"),
        "timm": timm.__version__,
    }


@torch.no_grad()
def top_label_predictions(
    model: torch.nn.Module, stream, device, *, batch_size: int = 512
) -> tuple[list[float], list[int]]:
    """Top-label confidence and correctness of ``model`` on a stream's test data.

    Each experience's dataset is read in its ``"eval"`` transform group. The
    confidences are rounded to 5 digits (they go into result files).

    :return: ``(confidence, correct)``, one entry per sample.
    """
    model = model.eval()
    conf, correct = [], []
    for exp in stream:
        loader = torch.utils.data.DataLoader(exp.dataset.eval(), batch_size=batch_size)
        for x, y, *_ in loader:
            p = torch.softmax(model(x.to(device)).float(), dim=1).cpu()
            c, pred = p.max(dim=1)
            conf += [round(float(v), 5) for v in c]
            correct += (pred == y).int().tolist()
    return conf, correct


SEED_STD_DDOF = 0
"""Degrees of freedom of every spread over seeds the project prints: 0."""


def seed_std(values) -> float:
    """Spread over seeds as every table of the project reports it.

    The population standard deviation (``ddof=0``, :func:`statistics.pstdev`)
    of ``values``: the scripts that print "mean ± std" over seeds
    (``examples/compare.py``, ``benchmarks/gradmix_sweep.py``,
    ``benchmarks/ssl_protocol_summary.py``) all use this one convention. The
    sample std (``ddof=1``) is larger by ``sqrt(n / (n - 1))``: 1.22x with 3
    seeds, 1.12x with 5.

    :param values: one value per seed (at least one).
    :return: the standard deviation, ``0.0`` for a single value.
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("seed_std needs at least one value")
    return statistics.pstdev(values)


CALIBRATION_PREFIXES = ("ECE", "MCE", "NLL", "Brier")


def calibration_results(results: Mapping[str, float]) -> dict[str, float]:
    """The calibration metrics of an Avalanche eval result, by short name.

    ``"ECE_Stream/eval_phase/test_stream/Task000"`` becomes ``"ECE_Stream"``.
    """
    return {
        key.split("/")[0]: float(value)
        for key, value in results.items()
        if key.split("_")[0] in CALIBRATION_PREFIXES
    }


__all__ = [
    "KNOWN_HARMLESS_WARNINGS",
    "SEED_STD_DDOF",
    "UsageError",
    "add_batch_size_option",
    "add_device_option",
    "add_log_options",
    "add_output_option",
    "add_quiet_option",
    "add_run_options",
    "add_seeds_option",
    "add_threads_option",
    "calibration_results",
    "close_loggers",
    "default_threads",
    "is_known_harmless",
    "known_warnings_silenced",
    "make_loggers",
    "script_parser",
    "seed_std",
    "software_versions",
    "top_label_predictions",
    "torch_threads",
    "usage_errors",
]
