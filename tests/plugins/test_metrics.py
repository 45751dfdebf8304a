"""Calibration metrics against numpy references and torchmetrics, in Avalanche."""

import warnings

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from avalanche_mixplugins.experiments.plots import reliability_diagram
from avalanche_mixplugins.metrics import (
    BrierScore,
    ExpectedCalibrationError,
    MaximumCalibrationError,
    NegativeLogLikelihood,
    calibration_metrics,
)


def np_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def np_reference(logits, labels, n_bins, eps=1e-12):
    """ECE, MCE, NLL, Brier in numpy; labels beyond the columns get probability 0."""
    probs = np_softmax(logits.astype(np.float64))
    width = max(probs.shape[1], labels.max() + 1)
    probs = np.pad(probs, ((0, 0), (0, width - probs.shape[1])))
    conf = probs.max(axis=1).astype(np.float32)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0, 1, n_bins + 1, dtype=np.float32)
    bins = np.searchsorted(edges, conf, side="right") - 1  # [b_i, b_i+1)
    ece, mce = 0.0, 0.0
    for b in np.unique(bins):
        sel = bins == b
        gap = abs(correct[sel].mean() - conf[sel].astype(np.float64).mean())
        ece += sel.mean() * gap
        mce = max(mce, gap)
    p_y = probs[np.arange(len(labels)), labels]
    nll = -np.log(np.maximum(p_y, eps)).mean()
    onehot = np.eye(width)[labels]
    brier = ((probs - onehot) ** 2).sum(axis=1).mean()
    return ece, mce, nll, brier


def run(metric, batches):
    for z, y in batches:
        metric.update(torch.as_tensor(z), torch.as_tensor(y))
    return metric.result()


@pytest.mark.parametrize("n_bins", [15, 10, 4])
def test_metrics_match_numpy_and_torchmetrics(n_bins):
    rng = np.random.default_rng(n_bins)
    logits = (rng.normal(size=(500, 7)) * 2.5).astype(np.float32)
    labels = rng.integers(0, 7, size=500)
    # half the labels follow the arg-max so confidence and accuracy vary together
    labels[:250] = logits[:250].argmax(1)
    ece, mce, nll, brier = np_reference(logits, labels, n_bins)
    batches = [(logits[i : i + 64], labels[i : i + 64]) for i in range(0, 500, 64)]
    assert run(ExpectedCalibrationError(n_bins=n_bins), batches) == pytest.approx(
        ece, abs=1e-5
    )
    assert run(MaximumCalibrationError(n_bins=n_bins), batches) == pytest.approx(
        mce, abs=1e-5
    )
    assert run(NegativeLogLikelihood(), batches) == pytest.approx(nll, rel=1e-6)
    assert run(BrierScore(), batches) == pytest.approx(brier, rel=1e-6)
    # torchmetrics' own numbers on the whole set
    z, y = torch.from_numpy(logits), torch.from_numpy(labels)
    tm_ece = multiclass_calibration_error(z.softmax(1), y, 7, n_bins=n_bins, norm="l1")
    tm_mce = multiclass_calibration_error(z.softmax(1), y, 7, n_bins=n_bins, norm="max")
    assert tm_ece.item() == pytest.approx(ece, abs=1e-5)
    assert tm_mce.item() == pytest.approx(mce, abs=1e-5)
    assert torch.nn.functional.cross_entropy(z, y).item() == pytest.approx(
        nll, rel=1e-5
    )


def test_growing_head_and_labels_outside_the_head():
    rng = np.random.default_rng(0)
    z_small = rng.normal(size=(40, 3)).astype(np.float32) * 3
    y_small = rng.integers(0, 5, size=40)  # labels 3 and 4 are not in the head
    z_big = rng.normal(size=(60, 5)).astype(np.float32) * 3
    y_big = rng.integers(0, 5, size=60)
    pad = np.full((40, 2), -np.inf, dtype=np.float32)  # probability 0
    ref = np_reference(
        np.concatenate([np.concatenate([z_small, pad], 1), z_big]),
        np.concatenate([y_small, y_big]),
        15,
    )
    batches = [(z_small, y_small), (z_big, y_big)]
    got = [
        run(ExpectedCalibrationError(), batches),
        run(MaximumCalibrationError(), batches),
        run(NegativeLogLikelihood(), batches),
        run(BrierScore(), batches),
    ]
    assert got == pytest.approx(list(ref), rel=1e-5, abs=1e-6)
    # an unseen label has probability 0: NLL -log(eps), Brier 1 + sum p^2
    nll = NegativeLogLikelihood(eps=1e-6)
    nll.update(torch.zeros(1, 2), torch.tensor([4]))
    assert nll.result() == pytest.approx(-np.log(1e-6))
    brier = BrierScore()
    brier.update(torch.zeros(1, 2), torch.tensor([4]))
    assert brier.result() == pytest.approx(1.5)


def test_reset_empty_and_bad_arguments():
    ece = ExpectedCalibrationError()
    assert np.isnan(ece.result())
    ece.update(torch.tensor([[5.0, 0.0]]), torch.tensor([0]))
    assert ece.result() > 0
    ece.reset()
    assert np.isnan(ece.result())
    with pytest.raises(ValueError, match="n_bins"):
        ExpectedCalibrationError(n_bins=0)
    with pytest.raises(ValueError, match="labels"):
        BrierScore().update(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        BrierScore().update(torch.zeros(3), torch.zeros(3, dtype=torch.long))


def test_calibration_metrics_helper():
    names = [str(m) for m in calibration_metrics()]
    assert names == [
        "ECE_Exp",
        "MCE_Exp",
        "NLL_Exp",
        "Brier_Exp",
        "ECE_Stream",
        "MCE_Stream",
        "NLL_Stream",
        "Brier_Stream",
    ]
    only = calibration_metrics(
        mce=False, nll=False, brier=False, experience=False, n_bins=10
    )
    assert [str(m) for m in only] == ["ECE_Stream"] and only[0]._metric.n_bins == 10
    with pytest.raises(ValueError, match="n_bins"):
        calibration_metrics(n_bins=-1)


def test_plugin_metrics_in_evaluation_plugin():
    from avalanche.benchmarks import nc_benchmark
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.training import Naive
    from avalanche.training.plugins import EvaluationPlugin
    from torch.utils.data import TensorDataset

    from avalanche_mixplugins.experiments.datasets import load_digits_tensors

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    torch.manual_seed(0)
    x_tr, y_tr, x_te, y_te = load_digits_tensors()
    train = TensorDataset(x_tr, y_tr)
    train.targets = y_tr.tolist()
    test = TensorDataset(x_te, y_te)
    test.targets = y_te.tolist()
    bench = nc_benchmark(
        train, test, 2, task_labels=False, seed=0, class_ids_from_zero_in_each_exp=False
    )
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        train_mb_size=64,
        eval_mb_size=100,
        evaluator=EvaluationPlugin(
            accuracy_metrics(experience=True, stream=True),
            calibration_metrics(n_bins=10),
        ),
    )
    strategy.train(bench.train_stream[0])
    results = strategy.eval(bench.test_stream)

    model.eval()
    all_z, all_y = [], []
    for exp in bench.test_stream:
        ds = exp.dataset.eval()
        x = torch.stack([ds[i][0] for i in range(len(ds))])
        y = torch.tensor([int(ds[i][1]) for i in range(len(ds))])
        with torch.no_grad():
            z = model(x)
        all_z.append(z.numpy())
        all_y.append(y.numpy())
        ece, mce, nll, brier = np_reference(z.numpy(), y.numpy(), 10)
        key = f"/eval_phase/test_stream/Task000/Exp{exp.current_experience:03d}"
        assert results["ECE_Exp" + key] == pytest.approx(ece, abs=1e-5)
        assert results["MCE_Exp" + key] == pytest.approx(mce, abs=1e-5)
        assert results["NLL_Exp" + key] == pytest.approx(nll, rel=1e-5)
        assert results["Brier_Exp" + key] == pytest.approx(brier, rel=1e-5)
    ece, mce, nll, brier = np_reference(
        np.concatenate(all_z), np.concatenate(all_y), 10
    )
    key = "/eval_phase/test_stream/Task000"
    assert results["ECE_Stream" + key] == pytest.approx(ece, abs=1e-5)
    assert results["Brier_Stream" + key] == pytest.approx(brier, rel=1e-5)
    assert "Top1_Acc_Stream" + key in results


def test_reliability_diagram_png(tmp_path):
    rng = np.random.default_rng(1)
    logits = torch.from_numpy(rng.normal(size=(300, 10)).astype(np.float32) * 3)
    labels = torch.from_numpy(rng.integers(0, 10, size=300))
    path = tmp_path / "reliability.png"
    fig = reliability_diagram(logits, labels, n_bins=10, path=path, title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ece = ExpectedCalibrationError(n_bins=10)
    ece.update(logits, labels)
    legend = fig.axes[0].get_legend().get_title().get_text()
    assert legend == f"ECE = {ece.result():.4f}"
    # probabilities are accepted as they are
    fig2 = reliability_diagram(logits.softmax(1).numpy(), labels.numpy(), n_bins=10)
    assert fig2.axes[0].get_legend().get_title().get_text() == legend
    with pytest.raises(ValueError, match="labels"):
        reliability_diagram(logits, labels[:10])


def test_plugin_metric_classes_come_from_one_table():
    import inspect

    from avalanche_mixplugins import metrics

    arguments = {"ECE": ["n_bins"], "MCE": ["n_bins"], "NLL": ["eps"], "Brier": []}
    for level, prefix, suffix in (
        ("experience", "Experience", "Exp"),
        ("stream", "Stream", "Stream"),
    ):
        for quantity, names in arguments.items():
            cls = getattr(metrics, f"{prefix}{quantity}")
            assert metrics.PLUGIN_METRICS[quantity, level] is cls
            assert [p.name for p in inspect.signature(cls).parameters.values()] == names
            metric = cls()
            assert isinstance(metric, metrics.CalibrationPluginMetric)
            assert str(metric) == f"{quantity}_{suffix}"
            with pytest.raises(TypeError):
                cls(5)  # keyword-only
    assert metrics.ExperienceECE(n_bins=7)._metric.n_bins == 7
    assert metrics.StreamNLL(eps=1e-3)._metric.eps == 1e-3
