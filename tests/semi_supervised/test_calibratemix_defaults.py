"""CalibrateMix's per-algorithm defaults, resolved when training starts from the
strategy's algorithm (real strategy, digits)."""

from __future__ import annotations

import logging

import pytest
import torch
from avalanche.core import SupervisedPlugin

from ssl_ext.algorithms import FixMatch, SoftMatch
from ssl_ext.calibratemix_plugin import CalibrateMixPlugin
from ssl_ext.experiments import calibratemix_summary
from tests.support.nets import two_conv_cnn
from tests.support.semi_supervised import ssl_digits, ssl_strategy

# the validated table, written out by hand (docs/calibratemix.md)
VALIDATED = {
    "fixmatch": ("bce", 1.0, 1.0),
    "softmatch": ("ce", 0.5, 1.0),
    "flexmatch": ("ce", 0.5, 1.0),
}
RELEASE = ("bce", 1.0, 0.4)


@pytest.fixture(scope="module")
def data():
    return ssl_digits(per_class=4, n_test=20)


class Objective(SupervisedPlugin):
    """After CalibrateMix: the objective minus the base loss, and L_mix."""

    def __init__(self, cm):
        super().__init__()
        self.cm, self.rows = cm, []

    def before_backward(self, strategy, **kwargs):
        if self.cm.mix_loss is not None:
            extra = float((strategy.loss - strategy.base_loss).detach())
            self.rows.append((extra, float(self.cm.mix_loss)))


def train(data, algorithm, **kwargs):
    bench, ulb = data
    torch.manual_seed(0)
    cm = CalibrateMixPlugin(warmup=1, seed=0, k_fraction=0.2, **kwargs)
    rec = Objective(cm)
    strategy = ssl_strategy(
        two_conv_cnn(), ulb, [cm, rec], algorithm=algorithm, train_iterations=3
    )
    strategy.train(bench.train_stream[0])
    return cm, rec.rows


def used(cm):
    return (cm.loss, cm.mix_weight, cm.alpha)


@pytest.mark.parametrize("algorithm", ["fixmatch", "softmatch", "flexmatch"])
def test_fast_mode_takes_the_validated_row_of_its_algorithm(data, algorithm, caplog):
    cm = CalibrateMixPlugin(mode="fast")
    assert used(cm) == (None, None, None)  # nothing decided before training
    with caplog.at_level(logging.INFO, logger="ssl_ext.calibratemix_plugin"):
        cm, rows = train(data, algorithm)
    assert used(cm) == VALIDATED[algorithm]
    assert set(cm.resolved_from.values()) == {f"table:{algorithm}"}
    # the weight actually used: objective = base + mix_weight * L_mix
    assert rows and all(
        extra == pytest.approx(VALIDATED[algorithm][1] * mix, rel=1e-4, abs=1e-6)
        for extra, mix in rows
    )
    # logged once, and stored in what a result file records
    assert any("table:" + algorithm in r.getMessage() for r in caplog.records)
    config = calibratemix_summary(cm)["config"]
    assert (config["loss"], config["mix_weight"], config["alpha"]) == VALIDATED[
        algorithm
    ]
    assert config["requested"] == {"loss": None, "mix_weight": None, "alpha": None}


def test_an_explicit_argument_always_wins(data):
    cm, rows = train(data, "softmatch", loss="bce", mix_weight=2.0)
    assert used(cm) == ("bce", 2.0, 1.0)  # alpha still from SoftMatch's row
    assert cm.resolved_from == {
        "loss": "explicit",
        "mix_weight": "explicit",
        "alpha": "table:softmatch",
    }
    assert all(extra == pytest.approx(2.0 * mix, rel=1e-4) for extra, mix in rows)


def test_faithful_mode_keeps_the_release_values(data):
    cm, _ = train(data, "softmatch", mode="faithful", double_base_loss=False)
    assert used(cm) == RELEASE
    assert set(cm.resolved_from.values()) == {"release"}


def test_a_built_in_rule_passed_as_an_instance_gets_its_row(data):
    cm, _ = train(data, SoftMatch())
    assert used(cm) == VALIDATED["softmatch"]


class MyRule(FixMatch):
    """A pseudo-labeller of one's own (the table does not know it)."""


def test_an_unknown_pseudo_labeller_gets_the_release_values_and_a_warning(data):
    with pytest.warns(UserWarning, match="MyRule.*release's values"):
        cm, _ = train(data, MyRule(), alpha=0.7)
    assert used(cm) == ("bce", 1.0, 0.7)
    assert cm.resolved_from["alpha"] == "explicit"
    assert cm.resolved_from["loss"].startswith(
        "release (unknown pseudo-labeller MyRule"
    )
