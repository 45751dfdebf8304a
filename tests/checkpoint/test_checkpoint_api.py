"""The checkpoint API around a run: what it refuses and why, the deprecated
plugin name, the ``Stateful`` protocol, no import of the SSL package."""

from __future__ import annotations

import pytest
import torch
from avalanche.training import Naive

from avalanche_mixplugins import GradMixPlugin
from avalanche_mixplugins.checkpoint import (
    CheckpointPlugin,
    ResumableInExperience,
    StateCheckpointPlugin,
    Stateful,
    load_checkpoint,
    save_checkpoint,
)
from avalanche_mixplugins.experiments.streams import split_digits
from tests.checkpoint.runs import build_replay, evaluator
from tests.support.cl import cl_strategy
from tests.support.nets import make_mlp


def test_buffer_with_transforms_needs_dataset_like(tmp_path):
    bench = split_digits(n_experiences=5, seed=0, normalize=True)
    run, _, _ = build_replay("experience", seed=0)
    run.train(bench.train_stream[0])
    save_checkpoint(tmp_path / "c.pt", run)
    fresh, _, _ = build_replay("experience", seed=0)
    with pytest.raises(ValueError, match="dataset_like"):
        load_checkpoint(tmp_path / "c.pt", fresh)


def test_plugins_must_match_the_saved_run(tmp_path):
    bench = split_digits(n_experiences=5, seed=0)
    run, _, _ = build_replay("experience", seed=0)
    run.train(bench.train_stream[0])
    save_checkpoint(tmp_path / "c.pt", run)
    other = cl_strategy("naive", make_mlp(), [GradMixPlugin(seed=3)])
    with pytest.raises(ValueError, match="plugin states"):
        load_checkpoint(tmp_path / "c.pt", other)


def test_inside_an_experience_needs_a_resumable_strategy(tmp_path):
    bench = split_digits(n_experiences=5, seed=0)
    run, _, _ = build_replay("experience", seed=0)
    assert not isinstance(run, ResumableInExperience)
    run.plugins.insert(0, StateCheckpointPlugin(tmp_path / "c.pt", every=2))
    with pytest.raises(ValueError, match="training_position"):
        run.train(bench.train_stream[0])


def test_checkpoint_plugin_is_a_deprecated_alias(tmp_path):
    with pytest.warns(DeprecationWarning, match="StateCheckpointPlugin"):
        plugin = CheckpointPlugin(tmp_path / "c.pt", every=3)
    assert isinstance(plugin, StateCheckpointPlugin) and plugin.every == 3
    with pytest.raises(ValueError, match="every must be a positive integer"):
        StateCheckpointPlugin(tmp_path / "c.pt", every=0)


class CountingNaive(Naive):
    """A strategy with state of its own, saved through the Stateful protocol."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = torch.zeros(10, dtype=torch.long)

    def _after_training_iteration(self, **kwargs):
        self.seen += torch.bincount(self.mb_y, minlength=10)
        super()._after_training_iteration(**kwargs)

    def state_dict(self) -> dict:
        return {"seen": self.seen.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.seen = state["seen"].clone()


def test_a_stateful_strategy_gets_its_state_back(tmp_path):
    """Any strategy implementing state_dict/load_state_dict is saved and
    restored by the generic checkpoint, nothing else needed."""
    bench = split_digits(n_experiences=5, seed=0)

    def build():
        model = make_mlp()
        return CountingNaive(
            model=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
            train_mb_size=32,
            evaluator=evaluator(),
        )

    run = build()
    assert isinstance(run, Stateful) and not isinstance(run, ResumableInExperience)
    run.train(bench.train_stream[0])
    assert run.seen.sum() == len(bench.train_stream[0].dataset)
    save_checkpoint(tmp_path / "c.pt", run)
    fresh = build()
    load_checkpoint(tmp_path / "c.pt", fresh)
    assert torch.equal(fresh.seen, run.seen)
    with pytest.raises(ValueError, match="no load_state_dict"):
        load_checkpoint(tmp_path / "c.pt", build_replay("experience", seed=0)[0])


def test_the_checkpoint_package_does_not_import_the_ssl_package():
    import subprocess
    import sys

    code = (
        "import sys, avalanche_mixplugins.checkpoint, avalanche_mixplugins.validation;"
        "assert 'ssl_ext' not in sys.modules, 'ssl_ext imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
