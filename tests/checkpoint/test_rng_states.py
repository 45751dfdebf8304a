"""Every random state a checkpoint carries, checked by drawing from it.

A run is checkpointed; right then, each source of randomness is *peeked*
(a few draws, then its state is put back, so the run goes on unchanged):
torch's, numpy's and Python's global generators, CUDA's where present, each
plugin's own ``generator`` (on whatever device it lives) and the counters
that stand for state (the EMA teacher's step count, the next automatic
sample id). The process then scrambles every global generator, as a fresh
process would start, builds fresh objects with another seed, loads the
checkpoint and peeks again: the draws must be the same. Inside an
experience, the loaders are checked by the samples they deliver next.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import ReplayPlugin

from avalanche_mixplugins.checkpoint import load_checkpoint, save_checkpoint
from avalanche_mixplugins.experiments.streams import split_digits
from ssl_ext.calibratemix_plugin import CalibrateMixPlugin
from tests.checkpoint.runs import (
    DrawsAtExperienceStart,
    InterruptAt,
    Interrupted,
    build_replay,
    evaluator,
)
from tests.support.nets import two_conv_cnn
from tests.support.semi_supervised import ssl_digits, ssl_strategy


def peek_generator(gen: torch.Generator) -> torch.Tensor:
    """Three draws from ``gen`` on its own device; its state is put back."""
    state = gen.get_state()
    draws = torch.rand(3, generator=gen, device=gen.device).cpu()
    gen.set_state(state)
    return draws


def peek_globals() -> dict:
    """Draws from every global generator; their states are put back."""
    py, npy, th = random.getstate(), np.random.get_state(), torch.get_rng_state()
    out = {
        "python": [random.random() for _ in range(3)],
        "numpy": np.random.rand(3).tolist(),
        "torch": torch.rand(3),
    }
    random.setstate(py)
    np.random.set_state(npy)
    torch.set_rng_state(th)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.get_rng_state()
        out["cuda"] = torch.rand(3, device="cuda").cpu()
        torch.cuda.set_rng_state(cuda)
    return out


def scramble_globals(seed: int) -> None:
    """What a fresh process would start from."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def test_between_experiences_every_generator_continues_where_it_stopped(tmp_path):
    bench = split_digits(n_experiences=5, seed=0, normalize=True)
    train = bench.train_stream
    run, gradmix, _ = build_replay("class", seed=0)
    for exp in train[:2]:
        run.train(exp)
    save_checkpoint(tmp_path / "c.pt", run)
    expected = peek_globals() | {"gradmix": peek_generator(gradmix.generator)}
    del run

    scramble_globals(77)
    resumed, plugin, _ = build_replay("class", seed=11)
    assert not torch.equal(peek_generator(plugin.generator), expected["gradmix"])
    load_checkpoint(tmp_path / "c.pt", resumed, dataset_like=train[0].dataset)
    got = peek_globals() | {"gradmix": peek_generator(plugin.generator)}
    assert_same(got, expected)


class SaveAndPeek(SupervisedPlugin):
    """At iteration ``at`` of experience ``exp``: save, then peek every state;
    at the next iteration, keep the samples the loaders delivered."""

    def __init__(self, path, exp, at, cm):
        super().__init__()
        self.path, self.exp, self.at, self.cm = path, exp, at, cm
        self.peeked = None
        self.next_ids = None

    def _here(self, strategy):
        return strategy.experience.current_experience == self.exp

    def before_forward(self, strategy, **kwargs):
        done = strategy.clock.train_exp_iterations
        if self._here(strategy) and done == self.at and self.next_ids is None:
            self.next_ids = (strategy.mb_index.clone(), strategy.mb_ulb_index.clone())

    def after_training_iteration(self, strategy, **kwargs):
        if self._here(strategy) and strategy.clock.train_exp_iterations + 1 == self.at:
            save_checkpoint(self.path, strategy)
            self.peeked = peek_ssl(strategy, self.cm)


def peek_ssl(strategy, cm) -> dict:
    state = strategy.state_dict()
    return peek_globals() | {
        "calibratemix": peek_generator(cm.generator),
        "ema_steps": strategy.ema_steps,
        "next_sample_id": state["next_sample_id"],
        "cm_iteration": cm.iteration,
    }


def build_ssl(unlabeled, seed, path):
    """SoftMatch + CalibrateMix; the watcher and the crash come before the
    strategy's clock in the plugin list (they read the iteration count)."""
    torch.manual_seed(seed)
    cm = CalibrateMixPlugin(mode="fast", warmup=2, seed=seed + 4)
    watch = SaveAndPeek(path, exp=1, at=5, cm=cm)
    strategy = ssl_strategy(
        two_conv_cnn(),
        unlabeled,
        [
            ReplayPlugin(mem_size=20),
            DrawsAtExperienceStart(),
            cm,
            watch,
            InterruptAt(1, 6),
        ],
        momentum=0.9,
        algorithm="softmatch",
        train_iterations=8,
        ema_decay=0.9,
        evaluator=evaluator(),
    )
    return strategy, cm, watch


def test_inside_an_experience_every_generator_and_counter_is_restored(tmp_path):
    bench, unlabeled = ssl_digits(
        per_class=4, n_test=20, n_experiences=2, n_unlabeled=200
    )
    train = bench.train_stream
    path = tmp_path / "ssl.pt"
    run, _, watch = build_ssl(unlabeled, seed=0, path=path)
    try:
        for exp in train:
            run.train(exp)
    except Interrupted:
        pass
    expected, expected_ids = watch.peeked, watch.next_ids
    assert expected is not None and expected_ids is not None
    assert expected["ema_steps"] == 8 + 5
    del run

    scramble_globals(123)
    resumed, cm2, again = build_ssl(unlabeled, seed=5, path=tmp_path / "again.pt")
    info = load_checkpoint(path, resumed)
    assert (info["experience"], info["iteration"]) == (1, 5)
    got = peek_ssl(resumed, cm2)
    assert_same(got, expected)
    try:
        resumed.train(train[1])
    except Interrupted:
        pass
    # the loaders deliver the labeled and unlabeled samples of iteration 6
    assert torch.equal(again.next_ids[0], expected_ids[0])
    assert torch.equal(again.next_ids[1], expected_ids[1])
