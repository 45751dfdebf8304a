"""Exact resume of Avalanche replay setups with each mixing plugin, between
experiences, on real data (digits).

Each test runs a training without interruption, then the same training
interrupted (a checkpoint, then an exception, as a crash would), resumed in
freshly built objects from the checkpoint, and compares final metrics and
weights (CPU, deterministic, tolerance 1e-6). For every replay setup the
project supports (Naive + ReplayPlugin, ER-ACE, ER-AML, DER) with each mixing
plugin, the comparison covers the weights, the optimizer's momentum, every
buffer sample (all fields, DER's logits), its group and reservoir weight, the
plugin state and the global random states. Avalanche's strategies resume
between experiences only (the semi-supervised strategy also inside one:
``test_ssl_resume.py``).
"""

from __future__ import annotations

import pytest
import torch

from avalanche_mixplugins import CutMixPlugin, GradMixPlugin, MixupPlugin
from avalanche_mixplugins.checkpoint import (
    StateCheckpointPlugin,
    load_checkpoint,
    save_checkpoint,
)
from avalanche_mixplugins.experiments.streams import split_digits
from tests.checkpoint.runs import (
    ACC,
    LOSS,
    DrawsAtExperienceStart,
    build_replay,
)
from tests.support.cl import REPLAY_SETUPS, cl_strategy, replay_storage
from tests.support.nets import flat_params, make_mlp


# ------------------------------------------------ Naive + ReplayPlugin + GradMix
@pytest.mark.parametrize("policy", ["experience", "class"])
def test_replay_gradmix_resumes_exactly_at_an_experience_boundary(tmp_path, policy):
    bench = split_digits(n_experiences=5, seed=0, normalize=True)
    train, test = bench.train_stream[:4], bench.test_stream[:4]

    torch.manual_seed(0)
    ref, ref_plugin, _ = build_replay(policy, seed=0)
    for exp in train:
        ref.train(exp)
    ref_res = ref.eval(test)

    torch.manual_seed(0)
    run, _, _ = build_replay(policy, seed=0)
    for exp in train[:2]:
        run.train(exp)
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, run)
    saved_params = flat_params(run.model)
    del run  # the process ends here

    torch.manual_seed(123)  # a different initialisation and global RNG state
    resumed, plugin, replay = build_replay(policy, seed=7)
    info = load_checkpoint(path, resumed, dataset_like=train[0].dataset)
    assert info["next_experience"] == 2 and info["experience"] is None
    assert torch.equal(flat_params(resumed.model), saved_params)
    assert len(replay.storage_policy.buffer) == 60
    for exp in train[info["next_experience"] :]:
        resumed.train(exp)
    res = resumed.eval(test)

    assert not torch.equal(flat_params(resumed.model), saved_params)
    assert res[ACC] == pytest.approx(ref_res[ACC], abs=1e-6)
    assert res[LOSS] == pytest.approx(ref_res[LOSS], abs=1e-6)
    torch.testing.assert_close(
        flat_params(resumed.model), flat_params(ref.model), rtol=0, atol=1e-6
    )
    assert torch.equal(plugin.pair_scores, ref_plugin.pair_scores)
    assert plugin.scored_pairs.sum() > 0
    assert resumed.clock.train_iterations == ref.clock.train_iterations


# ------------------------------------- every replay setup x every mixing plugin
MIXERS = {
    "gradmix": lambda seed: GradMixPlugin(seed=seed),
    "mixup": lambda seed: MixupPlugin(seed=seed),
    "cutmix": lambda seed: CutMixPlugin(seed=seed),
}


def build_cl(setup: str, mixer: str, seed: int):
    """A replay setup with a mixing plugin; ``seed`` changes the initial weights,
    the plugin's generator and the global RNG state (a resumed run must get them
    all from the checkpoint)."""
    torch.manual_seed(seed)
    model = make_mlp()
    plugin = MIXERS[mixer](seed + 1)
    strategy = cl_strategy(
        setup,
        model,
        [DrawsAtExperienceStart(), plugin],
        # ER-AML needs >= train_mb_size samples in each class group of its buffer
        mem_size=160 if setup == "er_aml" else 60,
        momentum=0.9,
        train_mb_size=16,
        train_epochs=1,
        eval_mb_size=256,
    )
    return strategy, plugin


def buffer_snapshot(policy) -> dict:
    """Every sample of a buffer (raw, without transforms), field by field, with
    its group and reservoir weight: what a resumed run must hold."""
    groups = getattr(policy, "buffer_groups", None)
    parts = groups.items() if groups is not None else [(None, policy)]
    snap = {}
    for key, group in parts:
        data = group.buffer.remove_current_transform_group()
        items = [data[i] for i in range(len(data))]
        fields = [
            torch.stack([torch.as_tensor(item[k]) for item in items])
            for k in range(len(items[0]) if items else 0)
        ]
        snap[key] = {"fields": fields, "weights": group._buffer_weights.clone()}
    return snap


def run_state(strategy, plugin) -> dict:
    """Everything that must be equal after an exact resume."""
    import random

    import numpy as np

    opt = strategy.optimizer.state_dict()
    return {
        "params": flat_params(strategy.model),
        "momentum": [opt["state"][k]["momentum_buffer"] for k in sorted(opt["state"])],
        "buffer": buffer_snapshot(replay_storage(strategy)),
        "plugin": plugin.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": torch.from_numpy(np.random.get_state()[1].astype("int64")),
        "python_rng": list(random.getstate()[1]),
        "clock": strategy.clock.train_iterations,
    }


def assert_same(a, b, where="state"):
    """Recursive equality of nested state, tensors to 1e-6."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.shape == b.shape and a.dtype == b.dtype, where
        if a.is_floating_point():
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=where)
        else:
            assert torch.equal(a, b), where
    else:
        assert a == b or (a != a and b != b), where  # NaN == NaN here


@pytest.mark.parametrize("mixer", sorted(MIXERS))
@pytest.mark.parametrize("setup", REPLAY_SETUPS)
def test_every_replay_setup_resumes_exactly(tmp_path, setup, mixer):
    """Checkpoint after experience 2 of 3, crash, resume in fresh objects: the
    final weights, momentum, buffer, plugin state and RNG equal the run that
    was never interrupted."""
    bench = split_digits(n_experiences=5, seed=0, normalize=True)
    train = bench.train_stream[:3]

    ref, ref_plugin = build_cl(setup, mixer, seed=0)
    for exp in train:
        ref.train(exp)
    expected = run_state(ref, ref_plugin)

    run, run_plugin = build_cl(setup, mixer, seed=0)
    for exp in train[:2]:
        run.train(exp)
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, run)
    at_save = run_state(run, run_plugin)
    del run

    resumed, plugin = build_cl(setup, mixer, seed=11)
    info = load_checkpoint(path, resumed, dataset_like=train[0].dataset)
    assert info["next_experience"] == 2
    assert_same(run_state(resumed, plugin), at_save, "loaded")
    n_buffer = sum(len(f["fields"][0]) for f in at_save["buffer"].values())
    assert n_buffer >= 16  # the buffer is used on the next experience
    for exp in train[info["next_experience"] :]:
        resumed.train(exp)
    assert_same(run_state(resumed, plugin), expected, "resumed")
    if mixer == "gradmix":
        assert plugin.scored_pairs.any()


@pytest.mark.parametrize("setup", REPLAY_SETUPS)
def test_avalanche_strategies_refuse_a_checkpoint_inside_an_experience(tmp_path, setup):
    """Only the semi-supervised strategy resumes inside an experience; the
    others say to save between experiences instead of writing a file that
    would not resume exactly."""
    bench = split_digits(n_experiences=5, seed=0)
    strategy, _ = build_cl(setup, "mixup", seed=0)
    strategy.plugins.insert(0, StateCheckpointPlugin(tmp_path / "c.pt", every=2))
    with pytest.raises(ValueError, match="between experiences"):
        strategy.train(bench.train_stream[0])
    assert not (tmp_path / "c.pt").exists()


def test_format_1_checkpoints_still_load(tmp_path):
    """Files of the first layout (buffer inputs as one tensor ``x``, labels in
    the attributes) load, and the rebuilt samples collate with new ones (the
    ER-ACE buffer mixes both)."""
    bench = split_digits(n_experiences=5, seed=0)
    train = bench.train_stream[:3]
    ref, ref_plugin = build_cl("er_ace", "mixup", seed=0)
    for exp in train:
        ref.train(exp)

    run, _ = build_cl("er_ace", "mixup", seed=0)
    for exp in train[:2]:
        run.train(exp)
    save_checkpoint(tmp_path / "v2.pt", run)
    state = torch.load(tmp_path / "v2.pt", weights_only=True)
    state["format"] = 1
    for group in state["strategy_buffer"]["groups"]:
        data = group["buffer"]["data"]
        data["x"] = data.pop("fields")[0]["values"]
    torch.save(state, tmp_path / "v1.pt")

    resumed, plugin = build_cl("er_ace", "mixup", seed=5)
    assert load_checkpoint(tmp_path / "v1.pt", resumed)["next_experience"] == 2
    resumed.train(train[2])
    assert_same(run_state(resumed, plugin), run_state(ref, ref_plugin))


# ------------------------------------------------- SoftMatch (+ CalibrateMix)
