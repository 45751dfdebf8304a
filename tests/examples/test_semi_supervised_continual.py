"""The class-incremental stream of examples/semi_supervised.py (``--n-experiences``).

Real strategy, real model, real data (scikit-learn's digits), a few
iterations per experience. What each evaluation covered is read by a
recording plugin from the strategy's own eval batches, and the accuracies
and ECE are recomputed from those records (numpy binning), independently of
Avalanche's metrics the example reports.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.training.plugins import EvaluationPlugin

import ssl_ext
from avalanche_mixplugins.experiments.streams import class_incremental_from_tensors
from avalanche_mixplugins.metrics import calibration_metrics
from avalanche_mixplugins.models import make_model
from ssl_ext.experiments import load_ssl_dataset, split_training_set
from tests.support.calibration_reference import np_reference


class EvalRecorder(SupervisedPlugin):
    """Per ``eval`` call: the experiences evaluated, and every sample's label,
    prediction and logits, from the strategy's eval batches."""

    def __init__(self):
        super().__init__()
        self.calls: list[dict] = []

    def before_eval(self, strategy, **kwargs):
        self.calls.append({"experiences": [], "y": [], "logits": []})

    def before_eval_exp(self, strategy, **kwargs):
        self.calls[-1]["experiences"].append(strategy.experience.current_experience)

    def after_eval_forward(self, strategy, **kwargs):
        call = self.calls[-1]
        call["y"].append(strategy.mb_y.cpu())
        call["logits"].append(strategy.mb_output.detach().float().cpu())


@pytest.fixture(scope="module")
def digits():
    return load_ssl_dataset("digits")


def test_each_experience_is_evaluated_on_the_classes_seen_so_far(script, digits):
    ssl = script("examples/semi_supervised.py")
    torch.manual_seed(0)
    x_tr, y_tr, x_te, y_te = digits
    lab, pool, _ = split_training_set(y_tr, per_class=4, seed=0, unlabeled=300)
    bench = class_incremental_from_tensors(
        x_tr[lab], y_tr[lab], x_te, y_te, n_experiences=5, seed=0
    )
    shares = ssl.unlabeled_shares(y_tr, pool, bench)
    # each share holds its experience's classes only, and the shares are the pool
    for exp, idx in zip(bench.train_stream, shares):
        assert set(y_tr[idx].tolist()) == set(exp.classes_in_this_experience)
    assert sorted(torch.cat(shares).tolist()) == sorted(pool.tolist())

    recorder = EvalRecorder()
    model = make_model("small_cnn", num_classes=10, in_chans=1)
    strategy = ssl_ext.SemiSupervisedStrategy(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.03),
        unlabeled=[torch.utils.data.TensorDataset(x_tr[idx]) for idx in shares],
        algorithm="softmatch",
        mu=2,
        train_iterations=3,
        train_mb_size=8,
        eval_mb_size=64,
        ema_decay=0.9,
        plugins=[recorder],
        evaluator=EvaluationPlugin(
            accuracy_metrics(experience=True, stream=True),
            calibration_metrics(experience=False, stream=True, n_bins=15),
            loggers=[],
        ),
    )
    _, _, continual = ssl.train_stream(strategy, bench)

    assert continual["n_experiences"] == 5 and len(continual["experiences"]) == 5
    assert len(recorder.calls) == 5
    order = list(bench.classes_order)
    seen: set[int] = set()
    for i, (row, exp, call) in enumerate(
        zip(continual["accuracy_matrix"], continual["experiences"], recorder.calls)
    ):
        seen |= set(order[2 * i : 2 * i + 2])
        assert exp["classes"] == sorted(order[2 * i : 2 * i + 2])
        assert exp["seen_classes"] == sorted(seen)
        assert call["experiences"] == list(range(i + 1))
        y = torch.cat(call["y"]).numpy()
        logits = torch.cat(call["logits"]).numpy()
        # the eval covered every test image of the seen classes, and no other
        assert set(y.tolist()) == seen
        assert len(y) == exp["n_test"] == int(np.isin(y_te.numpy(), list(seen)).sum())
        # accuracy per test experience (the row) and on all seen classes
        right = logits.argmax(1) == y
        assert len(row) == i + 1
        for j, acc in enumerate(row):
            in_j = np.isin(y, order[2 * j : 2 * j + 2])
            assert acc == pytest.approx(right[in_j].mean(), abs=1e-9)
        assert exp["accuracy"] == pytest.approx(right.mean(), abs=1e-9)
        ece, _, nll, _ = np_reference(logits, y, 15)
        assert exp["ece15"] == pytest.approx(ece, abs=1e-5)
        assert exp["nll"] == pytest.approx(nll, rel=1e-4)
    rows = continual["accuracy_matrix"]
    forgetting = [max(r[j] for r in rows[j:4]) - rows[4][j] for j in range(4)]
    assert continual["average_forgetting"] == pytest.approx(np.mean(forgetting))


@pytest.mark.filterwarnings("ignore:WARNING. accuracy is within:RuntimeWarning")
def test_the_result_line_carries_the_per_experience_metrics(script, tmp_path, digits):
    ssl = script("examples/semi_supervised.py")
    jsonl = tmp_path / "runs.jsonl"
    common = [
        "--dataset", "digits", "--labels", "40", "--iterations", "3",
        "--batch-size", "8", "--mu", "2", "--ema", "0.9", "--threads", "1",
        "--quiet", "--output-dir", str(tmp_path), "--unlabeled", "300",
        "--results-jsonl", str(jsonl),
    ]  # fmt: skip
    (res,) = ssl.main(
        [*common, "--n-experiences", "5", "--calibratemix", "fast",
         "--calibratemix-warmup", "1"]
    )  # fmt: skip
    ssl.main([*common, "--calibratemix", "off"])  # one experience: no stream record
    line, single = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert "continual" not in single and "experiences=" not in single["setting"]

    assert line["setting"] == "digits labels=40 iters=3 experiences=5 unlabeled=300"
    assert line["config"]["n_experiences"] == 5 and line["iterations"] == 3
    c = line["continual"]
    assert c["evaluated_on"] == "test classes seen so far"
    assert [len(r) for r in c["accuracy_matrix"]] == [1, 2, 3, 4, 5]
    order = c["class_order"]
    assert sorted(order) == list(range(10))
    _, y_tr, _, y_te = digits
    _, pool, _ = split_training_set(y_tr, per_class=4, seed=0, unlabeled=300)
    for i, e in enumerate(c["experiences"]):
        classes = order[2 * i : 2 * i + 2]
        assert e["experience"] == i and e["classes"] == sorted(classes)
        assert e["seen_classes"] == sorted(order[: 2 * i + 2])
        assert e["n_test"] == int(np.isin(y_te.numpy(), order[: 2 * i + 2]).sum())
        assert 0 <= e["accuracy"] <= 1 and 0 <= e["ece15"] <= 1
        n_pool = int(np.isin(y_tr[pool].numpy(), classes).sum())
        assert c["unlabeled_per_experience"][i] == n_pool
    assert c["labeled_per_experience"] == [8] * 5
    # CalibrateMix: a fresh APM table and warm-up per experience
    assert [h["mixing_iterations"] for h in c["calibratemix_per_experience"]] == [2] * 5
    assert line["calibratemix_config"]["warmup_iterations"] == 1
    # the last evaluation (all classes) is the run's accuracy and ECE
    last = c["experiences"][-1]
    assert last["accuracy"] == line["metrics"]["accuracy"]
    assert last["ece15"] == line["metrics"]["ece15"]
    # ... and agrees with the top-label predictions recorded beside it
    preds = res["final_predictions"]
    assert len(preds["correct"]) == len(y_te)
    conf = np.asarray(preds["confidence"], dtype=np.float64)
    correct = np.asarray(preds["correct"], dtype=np.float64)
    assert last["accuracy"] == pytest.approx(correct.mean(), abs=1e-9)
    edges = np.linspace(0, 1, 16)
    bins = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, 14)
    ece = sum(
        (bins == b).mean() * abs(correct[bins == b].mean() - conf[bins == b].mean())
        for b in np.unique(bins)
    )
    assert last["ece15"] == pytest.approx(ece, abs=1e-4)
    # the per-seed result file names the stream
    assert (tmp_path / "digits_l40_softmatch+calibratemix-fast_it3_e5_s0.json").exists()


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--n-experiences", "3"], "--n-experiences 3 does not divide the 10 classes"),
        (["--n-experiences", "0"], "--n-experiences must be a positive integer"),
        (["--n-exp", "5"], "unrecognized arguments: --n-exp 5"),
    ],
)
def test_bad_stream_options_are_one_line_errors(
    script, tmp_path, capsys, argv, expected
):
    ssl = script("examples/semi_supervised.py")
    common = ["--dataset", "digits", "--quiet", "--output-dir", str(tmp_path)]
    with pytest.raises(SystemExit) as info:
        ssl.main([*common, "--iterations", "2", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if ": error: " in x]
    assert expected in line, line
    assert not list(tmp_path.glob("*.json"))


def test_average_forgetting_by_hand(script):
    forgetting = script("examples/semi_supervised.py").average_forgetting
    rows = [[0.9], [0.5, 0.8], [0.6, 0.7, 0.95]]
    # experience 0: best 0.9 before the last, final 0.6; experience 1: 0.8 -> 0.7
    assert forgetting(rows) == pytest.approx((0.3 + 0.1) / 2)
    # a final accuracy above every earlier one is a negative drop, not zero
    assert forgetting([[0.4], [0.7, 0.9]]) == pytest.approx(-0.3)
    assert forgetting([[0.7]]) == 0.0
