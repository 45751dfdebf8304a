"""The calibration metrics as Avalanche plugin metrics, against numpy references."""

import numpy as np
import pytest
import torch
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.training.plugins import EvaluationPlugin

from avalanche_mixplugins.experiments.streams import class_incremental_from_tensors
from avalanche_mixplugins.metrics import calibration_metrics
from tests.support.calibration_reference import np_reference
from tests.support.cl import cl_strategy


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


def test_plugin_metrics_in_evaluation_plugin(digits_tensors):
    bench = class_incremental_from_tensors(*digits_tensors, n_experiences=2, seed=0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    strategy = cl_strategy(
        "naive",
        model,
        lr=0.1,
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
