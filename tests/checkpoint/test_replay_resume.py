"""Exact resume from avalanche_mixplugins.checkpoint, on real data (digits).

Each test runs a training without interruption, then the same training
interrupted (a checkpoint, then an exception, as a crash would), resumed in
freshly built objects from the checkpoint, and compares final metrics and
weights (CPU, deterministic, tolerance 1e-6). For every replay setup the
project supports (Naive + ReplayPlugin, ER-ACE, ER-AML, DER) with each mixing
plugin, the comparison covers the weights, the optimizer's momentum, every
buffer sample (all fields, DER's logits), its group and reservoir weight, the
plugin state and the global random states. Avalanche's strategies resume
between experiences only (the semi-supervised strategy also inside one).
"""

from __future__ import annotations

import pytest
import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
from avalanche.training import DER, ER_ACE, ER_AML, Naive
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
from avalanche.training.storage_policy import (
    ClassBalancedBuffer,
    ExperienceBalancedBuffer,
)
from nets import make_mlp
from ssl_helpers import small_cnn, ssl_digits, ssl_strategy

from avalanche_mixplugins import CutMixPlugin, GradMixPlugin, MixupPlugin
from avalanche_mixplugins.benchmarks import split_digits
from avalanche_mixplugins.checkpoint import (
    CheckpointPlugin,
    ResumableInExperience,
    StateCheckpointPlugin,
    Stateful,
    load_checkpoint,
    save_checkpoint,
)
from ssl_ext.calibratemix_plugin import CalibrateMixPlugin

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ACC = "Top1_Acc_Stream/eval_phase/test_stream/Task000"
LOSS = "Loss_Stream/eval_phase/test_stream/Task000"


class Interrupted(Exception):
    """Stands for a crash of the training process."""


class InterruptAt(SupervisedPlugin):
    """Raise :class:`Interrupted` after iteration ``iteration`` of experience ``exp``."""

    def __init__(self, exp: int, iteration: int):
        super().__init__()
        self.exp, self.iteration = exp, iteration

    def after_training_iteration(self, strategy, **kwargs):
        done = strategy.clock.train_exp_iterations + 1
        if (
            strategy.experience.current_experience == self.exp
            and done == self.iteration
        ):
            raise Interrupted


class DrawsAtExperienceStart(SupervisedPlugin):
    """Uses the global RNG when an experience starts (as a plugin initialising
    something at random would), so a resumed run reaches the first iteration
    with another RNG state unless the strategy restores it."""

    def before_training_exp(self, strategy, **kwargs):
        torch.rand(5)


def evaluator():
    return EvaluationPlugin(
        accuracy_metrics(stream=True), loss_metrics(stream=True), loggers=[]
    )


def params(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


# ------------------------------------------------ Naive + ReplayPlugin + GradMix
def build_replay(policy: str, seed: int):
    torch.manual_seed(seed)
    model = make_mlp()
    storage = (
        ExperienceBalancedBuffer(max_size=60)
        if policy == "experience"
        else ClassBalancedBuffer(max_size=60)
    )
    replay = ReplayPlugin(mem_size=60, storage_policy=storage)
    gradmix = GradMixPlugin(seed=3)
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        train_mb_size=32,
        train_epochs=1,
        eval_mb_size=256,
        device="cpu",
        plugins=[replay, gradmix],
        evaluator=evaluator(),
    )
    return strategy, gradmix, replay


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
    saved_params = params(run.model)
    del run  # the process ends here

    torch.manual_seed(123)  # a different initialisation and global RNG state
    resumed, plugin, replay = build_replay(policy, seed=7)
    info = load_checkpoint(path, resumed, dataset_like=train[0].dataset)
    assert info["next_experience"] == 2 and info["experience"] is None
    assert torch.equal(params(resumed.model), saved_params)
    assert len(replay.storage_policy.buffer) == 60
    for exp in train[info["next_experience"] :]:
        resumed.train(exp)
    res = resumed.eval(test)

    assert not torch.equal(params(resumed.model), saved_params)
    assert res[ACC] == pytest.approx(ref_res[ACC], abs=1e-6)
    assert res[LOSS] == pytest.approx(ref_res[LOSS], abs=1e-6)
    torch.testing.assert_close(
        params(resumed.model), params(ref.model), rtol=0, atol=1e-6
    )
    assert torch.equal(plugin.pair_scores, ref_plugin.pair_scores)
    assert plugin.scored_pairs.sum() > 0
    assert resumed.clock.train_iterations == ref.clock.train_iterations


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
    model = make_mlp()
    other = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
        plugins=[GradMixPlugin(seed=3)],
        evaluator=evaluator(),
    )
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


# ------------------------------------- every replay setup x every mixing plugin
MIXERS = {
    "gradmix": lambda seed: GradMixPlugin(seed=seed),
    "mixup": lambda seed: MixupPlugin(seed=seed),
    "cutmix": lambda seed: CutMixPlugin(seed=seed),
}
CL_SETUPS = ["naive_replay", "er_ace", "er_aml", "der"]


def build_cl(setup: str, mixer: str, seed: int):
    """A replay setup with a mixing plugin; ``seed`` changes the initial weights,
    the plugin's generator and the global RNG state (a resumed run must get them
    all from the checkpoint)."""
    torch.manual_seed(seed)
    model = make_mlp()
    plugin = MIXERS[mixer](seed + 1)
    kw = dict(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        train_mb_size=16,
        train_epochs=1,
        eval_mb_size=256,
        device="cpu",
        evaluator=EvaluationPlugin(loggers=[]),
    )
    plugins = [DrawsAtExperienceStart(), plugin]
    if setup == "naive_replay":
        strategy = Naive(plugins=[ReplayPlugin(mem_size=60), *plugins], **kw)
    elif setup == "er_ace":
        strategy = ER_ACE(mem_size=60, batch_size_mem=16, plugins=plugins, **kw)
    elif setup == "er_aml":
        # ER-AML needs >= train_mb_size samples in each class group of its buffer
        strategy = ER_AML(
            feature_extractor=model[:3],
            mem_size=160,
            batch_size_mem=16,
            plugins=plugins,
            **kw,
        )
    else:
        strategy = DER(mem_size=60, batch_size_mem=16, plugins=plugins, **kw)
    return strategy, plugin


def storage_policy(strategy):
    """The replay buffer of a setup: ReplayPlugin's, else the strategy's own."""
    for p in strategy.plugins:
        if isinstance(p, ReplayPlugin):
            return p.storage_policy
    return strategy.storage_policy


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
        "params": params(strategy.model),
        "momentum": [opt["state"][k]["momentum_buffer"] for k in sorted(opt["state"])],
        "buffer": buffer_snapshot(storage_policy(strategy)),
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
@pytest.mark.parametrize("setup", CL_SETUPS)
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


@pytest.mark.parametrize("setup", CL_SETUPS)
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
def ssl_data():
    return ssl_digits(per_class=6, n_test=150, n_experiences=2, n_unlabeled=400)


def build_ssl(unlabeled, seed: int, calibratemix: bool, extra=(), **kwargs):
    torch.manual_seed(seed)
    model = small_cnn()
    if calibratemix:
        extra = [CalibrateMixPlugin(mode="fast", warmup=3, seed=4), *extra]
    return ssl_strategy(
        model,
        unlabeled,
        [ReplayPlugin(mem_size=30), DrawsAtExperienceStart(), *extra],
        momentum=0.9,
        algorithm=kwargs.pop("algorithm", "softmatch"),
        train_iterations=12,
        ema_decay=0.9,
        evaluator=evaluator(),
        **kwargs,
    )


@pytest.mark.parametrize(
    "calibratemix", [False, True], ids=["softmatch", "calibratemix"]
)
def test_softmatch_resumes_exactly_inside_an_experience(tmp_path, calibratemix):
    bench, unlabeled = ssl_data()
    train, test = bench.train_stream, bench.test_stream

    torch.manual_seed(0)
    ref = build_ssl(unlabeled, seed=0, calibratemix=calibratemix)
    for exp in train:
        ref.train(exp)
    ref_res = ref.eval(test)

    path = tmp_path / "ssl.pt"
    torch.manual_seed(0)
    run = build_ssl(
        unlabeled,
        seed=0,
        calibratemix=calibratemix,
        extra=[StateCheckpointPlugin(path, every=5), InterruptAt(1, 7)],
    )
    with pytest.raises(Interrupted):
        for exp in train:
            run.train(exp)
    del run

    torch.manual_seed(99)
    resumed = build_ssl(unlabeled, seed=5, calibratemix=calibratemix)
    info = load_checkpoint(path, resumed)
    assert (info["experience"], info["iteration"]) == (1, 5)
    assert resumed.clock.train_iterations == 12 + 5
    for exp in train[info["experience"] :]:
        resumed.train(exp)
    res = resumed.eval(test)

    assert res[ACC] == pytest.approx(ref_res[ACC], abs=1e-6)
    assert res[LOSS] == pytest.approx(ref_res[LOSS], abs=1e-6)
    torch.testing.assert_close(
        params(resumed.model), params(ref.model), rtol=0, atol=1e-6
    )
    a, b = resumed.pseudo_labeler.state_dict(), ref.pseudo_labeler.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    torch.testing.assert_close(
        params(resumed.ema.module), params(ref.ema.module), rtol=0, atol=1e-6
    )
    assert resumed.clock.train_iterations == ref.clock.train_iterations == 24
    if calibratemix:
        mine, theirs = resumed.plugins[2], ref.plugins[2]
        assert isinstance(mine, CalibrateMixPlugin) and mine.iteration == 24
        assert mine.mix_loss is not None  # the mixed loss was on after the warm-up
        for table in ("aum", "apm"):
            a = getattr(mine, table).state_dict()
            b = getattr(theirs, table).state_dict()
            for key in a:
                torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_flexmatch_statistics_carry_over_an_experience_boundary(tmp_path):
    """A named algorithm is built at the first experience of a fresh strategy:
    the saved statistics must be loaded then (same unlabeled dataset)."""
    bench, unlabeled = ssl_data()
    train, test = bench.train_stream, bench.test_stream
    kw = dict(algorithm="flexmatch", algorithm_kwargs={"threshold": 0.3})

    ref = build_ssl(unlabeled, seed=0, calibratemix=True, **kw)
    for exp in train:
        ref.train(exp)
    ref_res = ref.eval(test)

    run = build_ssl(unlabeled, seed=0, calibratemix=True, **kw)
    run.train(train[0])
    save_checkpoint(tmp_path / "b.pt", run)
    assert (run.pseudo_labeler.selected_label >= 0).any()

    resumed = build_ssl(unlabeled, seed=3, calibratemix=True, **kw)
    info = load_checkpoint(tmp_path / "b.pt", resumed)
    assert info["next_experience"] == 1 and info["experience"] is None
    resumed.train(train[1])
    res = resumed.eval(test)
    assert torch.equal(
        resumed.pseudo_labeler.selected_label, ref.pseudo_labeler.selected_label
    )
    assert res[LOSS] == pytest.approx(ref_res[LOSS], abs=1e-6)
    torch.testing.assert_close(
        params(resumed.model), params(ref.model), rtol=0, atol=1e-6
    )


def test_format_2_files_of_the_ssl_strategy_still_load(tmp_path):
    """Format 2 kept the strategy state under ``ssl``, with the position inside
    it: such files load, and say where to continue."""
    bench, unlabeled = ssl_data()
    path = tmp_path / "v3.pt"
    run = build_ssl(
        unlabeled,
        seed=0,
        calibratemix=False,
        extra=[StateCheckpointPlugin(path, every=5), InterruptAt(0, 5)],
    )
    assert isinstance(run, ResumableInExperience)
    with pytest.raises(Interrupted):
        run.train(bench.train_stream[0])
    state = torch.load(path, weights_only=True)
    assert state["format"] == 3 and state["position"] == {
        "experience": 0,
        "iteration": 5,
    }
    state["format"] = 2
    state["ssl"] = state.pop("strategy")
    del state["position"]
    torch.save(state, tmp_path / "v2.pt")

    infos, labelers = [], []
    for name in ("v3.pt", "v2.pt"):
        fresh = build_ssl(unlabeled, seed=1, calibratemix=False)
        infos.append(load_checkpoint(tmp_path / name, fresh))
        fresh.train(bench.train_stream[0])
        labelers.append(fresh.pseudo_labeler.state_dict())
    assert infos[0] == infos[1] and (infos[1]["experience"], infos[1]["iteration"]) == (
        0,
        5,
    )
    for key in labelers[0]:
        assert torch.equal(labelers[0][key], labelers[1][key])
