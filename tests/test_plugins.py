"""Each plugin with each Avalanche replay setup, on real data (split digits)."""

from __future__ import annotations

import math

import pytest
import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.training import DER, ER_ACE, ER_AML, Naive
from avalanche.training.plugins import EvaluationPlugin, LwFPlugin, ReplayPlugin
from nets import make_mlp

from avalanche_mixplugins import CutMixPlugin, GradMixPlugin, MixupPlugin


class LossRecorder(SupervisedPlugin):
    """Records the loss the optimizer steps on (after every plugin added its term)."""

    def __init__(self):
        super().__init__()
        self.losses: list[float] = []

    def before_update(self, strategy, **kwargs):
        self.losses.append(float(strategy.loss))


PLUGINS = {
    "mixup": lambda: MixupPlugin(seed=1),
    "cutmix": lambda: CutMixPlugin(seed=1),
    "gradmix": lambda: GradMixPlugin(seed=1),
    "gradmix_cutmix": lambda: GradMixPlugin(seed=1, mix="cutmix"),
}
SETUPS = ["naive_replay", "er_ace", "er_aml", "der", "no_buffer"]


def run(setup, bench, plugin=None, extra=(), n_exp=2, seed=0):
    torch.manual_seed(seed)
    model = make_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    rec = LossRecorder()
    plugins = [p for p in (plugin,) if p is not None] + list(extra) + [rec]
    kw = dict(
        model=model,
        optimizer=opt,
        train_mb_size=32,
        train_epochs=1,
        eval_mb_size=256,
        device="cpu",
        evaluator=EvaluationPlugin(accuracy_metrics(stream=True), loggers=[]),
    )
    if setup == "naive_replay":
        strategy = Naive(plugins=[ReplayPlugin(mem_size=100), *plugins], **kw)
    elif setup == "no_buffer":
        strategy = Naive(plugins=plugins, **kw)
    elif setup == "er_ace":
        strategy = ER_ACE(mem_size=100, batch_size_mem=16, plugins=plugins, **kw)
    elif setup == "er_aml":
        # ER-AML needs >= train_mb_size samples per buffer class group.
        strategy = ER_AML(
            feature_extractor=model[:3],
            mem_size=400,
            batch_size_mem=32,
            plugins=plugins,
            **kw,
        )
    else:
        strategy = DER(mem_size=100, batch_size_mem=16, plugins=plugins, **kw)
    for exp in bench.train_stream[:n_exp]:
        strategy.train(exp)
    res = strategy.eval(bench.test_stream[:n_exp])
    return rec.losses, res["Top1_Acc_Stream/eval_phase/test_stream/Task000"], strategy


@pytest.fixture(scope="module")
def baselines(digits_benchmark):
    return {s: run(s, digits_benchmark)[0] for s in SETUPS}


@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_plugin_trains_two_experiences(setup, name, digits_benchmark, baselines):
    plugin = PLUGINS[name]()
    losses, acc, _ = run(setup, digits_benchmark, plugin)
    base = baselines[setup]
    assert len(losses) == len(base)
    assert all(math.isfinite(v) for v in losses)
    assert not torch.allclose(torch.tensor(losses), torch.tensor(base))
    assert plugin.last_loss is not None and torch.isfinite(plugin.last_loss)
    assert acc > 0.3, f"{name} with {setup} fell to {acc:.3f} accuracy"
    if name.startswith("gradmix") and setup != "no_buffer":
        # previous-class pairs were scored on the second experience
        assert plugin.scored_pairs.any() and torch.isfinite(plugin.pair_scores).all()


def test_same_seed_same_result(digits_benchmark):
    a = run("er_ace", digits_benchmark, GradMixPlugin(seed=5))
    b = run("er_ace", digits_benchmark, GradMixPlugin(seed=5))
    c = run("er_ace", digits_benchmark, GradMixPlugin(seed=6))
    assert a[0] == b[0] and a[1] == b[1]
    assert a[0] != c[0]


def test_composes_with_lwf(digits_benchmark):
    plain, _, _ = run("naive_replay", digits_benchmark, GradMixPlugin(seed=1))
    with_lwf, _, strategy = run(
        "naive_replay",
        digits_benchmark,
        GradMixPlugin(seed=1),
        extra=[LwFPlugin(alpha=1.0)],
    )
    n_first = len(digits_benchmark.train_stream[0].dataset) // 32 + 1
    # LwF has nothing to distil on the first experience, then adds its term
    assert plain[:n_first] == with_lwf[:n_first]
    assert plain[n_first:] != with_lwf[n_first:]
    assert all(math.isfinite(v) for v in with_lwf)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alpha": 0.0}, "alpha"),
        ({"prob": 1.5}, "prob"),
        ({"weight": -1.0}, "weight"),
        ({"weight": float("nan")}, "weight"),
        ({"pairing": "buffer"}, "pairing"),
    ],
)
@pytest.mark.parametrize("cls", [MixupPlugin, CutMixPlugin, GradMixPlugin])
def test_bad_arguments_raise(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"grad_space": "middle"}, "grad_space"),
        ({"momentum": 1.0}, "momentum"),
        ({"refresh": -0.1}, "refresh"),
        ({"fallback": "any"}, "fallback"),
        ({"no_buffer": "cutmix"}, "no_buffer"),
        ({"mix": "blend"}, "mix"),
    ],
)
def test_gradmix_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GradMixPlugin(**kwargs)


def test_keyword_only():
    with pytest.raises(TypeError):
        MixupPlugin(0.4)  # type: ignore[misc]


def _train_two(strategy, bench):
    for exp in bench.train_stream[:2]:
        strategy.train(exp)
    return strategy.eval(bench.test_stream[:2])[
        "Top1_Acc_Stream/eval_phase/test_stream/Task000"
    ]


@pytest.mark.parametrize("plugin_cls", [MixupPlugin, GradMixPlugin])
def test_incremental_classifier_head(plugin_cls, digits_benchmark):
    from avalanche.models import IncrementalClassifier
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 64),
        nn.ReLU(),
        IncrementalClassifier(64, initial_out_features=2),
    )
    plugin = plugin_cls(seed=0)
    rec = LossRecorder()
    strategy = ER_ACE(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        mem_size=100,
        batch_size_mem=16,
        train_mb_size=32,
        device="cpu",
        plugins=[plugin, rec],
        evaluator=EvaluationPlugin(accuracy_metrics(stream=True), loggers=[]),
    )
    acc = _train_two(strategy, digits_benchmark)
    assert all(math.isfinite(v) for v in rec.losses) and acc > 0.3
    if plugin_cls is GradMixPlugin:
        classes = [
            int(c)
            for e in digits_benchmark.train_stream[:2]
            for c in e.classes_in_this_experience
        ]
        seen = plugin.scored_pairs
        # the score matrix grew with the head and scored pairs of the two experiences
        assert seen.shape[0] >= max(classes) + 1
        assert seen[classes][:, classes].any()


def test_timm_model_under_bfloat16_autocast(digits_benchmark):
    import timm

    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224",
        img_size=8,
        patch_size=4,
        in_chans=1,
        depth=2,
        num_classes=10,
        embed_dim=48,
        num_heads=2,
    )
    plugin = GradMixPlugin(seed=0)
    rec = LossRecorder()
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        train_mb_size=32,
        device="cpu",
        plugins=[ReplayPlugin(mem_size=64), plugin, rec],
        evaluator=EvaluationPlugin(accuracy_metrics(stream=True), loggers=[]),
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for exp in digits_benchmark.train_stream[:2]:
            strategy.train(exp)
    assert all(math.isfinite(v) for v in rec.losses)
    assert plugin.last_loss is not None and plugin.last_loss.dtype == torch.float32
    assert plugin.scored_pairs.any() and torch.isfinite(plugin.pair_scores).all()


def _naive(model, plugin, mem=100):
    return Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
        train_mb_size=32,
        device="cpu",
        plugins=[ReplayPlugin(mem_size=mem), plugin],
        evaluator=EvaluationPlugin(loggers=[]),
    )


def test_labels_outside_the_outputs_raise(digits_benchmark):
    from nets import make_mlp as mlp

    strategy = _naive(mlp(num_classes=2), GradMixPlugin(seed=0))
    exp = next(
        e
        for e in digits_benchmark.train_stream
        if max(e.classes_in_this_experience) >= 2
    )
    with pytest.raises(
        (ValueError, IndexError), match="outside the model's 2 outputs|out of bounds"
    ):
        strategy.train(exp)


def test_non_finite_mixed_loss_is_skipped_and_scores_stay_finite(digits_benchmark):
    class NaNOnce(SupervisedPlugin):
        """After the strategy's forward, puts NaN into one input of every third batch."""

        def __init__(self):
            super().__init__()
            self.n = 0

        def after_forward(self, strategy, **kwargs):
            self.n += 1
            if self.n % 3 == 0:
                x = strategy.mbatch[0].clone()
                x[0] = float("nan")
                strategy.mbatch[0] = x

    model = make_mlp()
    plugin = GradMixPlugin(seed=0)
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(
            model.parameters(), lr=0.0
        ),  # NaN never reaches weights
        train_mb_size=32,
        device="cpu",
        plugins=[ReplayPlugin(mem_size=100), NaNOnce(), plugin],
        evaluator=EvaluationPlugin(loggers=[]),
    )
    with pytest.warns(RuntimeWarning, match="not finite"):
        for exp in digits_benchmark.train_stream[:2]:
            strategy.train(exp)
    assert plugin.skipped_steps > 0
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert torch.isfinite(plugin.pair_scores).all() and plugin.scored_pairs.any()


def test_integer_images_are_refused_with_a_hint():
    from avalanche_mixplugins.mixing import mix_inputs

    with pytest.raises(ValueError, match="ToDtype"):
        mix_inputs(
            torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.arange(4), torch.ones(4)
        )


def test_helpful_fraction_reaches_avalanche_loggers(digits_benchmark, tmp_path, capsys):
    from avalanche.logging import InteractiveLogger, TensorboardLogger

    from avalanche_mixplugins.plots import pair_score_heatmap

    model = make_mlp()
    plugin = GradMixPlugin(seed=0)
    evaluator = EvaluationPlugin(
        accuracy_metrics(stream=True),
        loggers=[
            InteractiveLogger(),
            TensorboardLogger(tb_log_dir=str(tmp_path / "tb")),
        ],
    )
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
        train_mb_size=32,
        device="cpu",
        plugins=[ReplayPlugin(mem_size=100), plugin],
        evaluator=evaluator,
    )
    for exp in digits_benchmark.train_stream[:2]:
        strategy.train(exp)
    name = "GradMix_HelpfulPairs/train_phase/train_stream"
    value = evaluator.get_last_metrics()[name]
    assert value == plugin.helpful_fraction() and 0.0 <= value <= 1.0
    assert name in capsys.readouterr().out  # printed by the InteractiveLogger
    assert any((tmp_path / "tb").rglob("events.out.tfevents*"))
    assert (
        len(plugin.history) == 2
        and plugin.history[0]["helpful_fraction"]
        != plugin.history[0]["helpful_fraction"]
    )  # NaN: no buffer yet
    pairs = plugin.helpful_pairs()
    assert pairs and all(a <= b and s > 0 for a, b, s in pairs)
    png = tmp_path / "scores.png"
    pair_score_heatmap(plugin.pair_scores, seen=plugin.scored_pairs, path=png)
    assert png.stat().st_size > 1000


def test_iteration_timer_limits_and_pauses(digits_benchmark):
    from avalanche_mixplugins.timing import IterationTimer

    timer = IterationTimer(record=False, limit=3)
    model = make_mlp()
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
        train_mb_size=32,
        device="cpu",
        plugins=[MixupPlugin(seed=0), timer],
        evaluator=EvaluationPlugin(loggers=[]),
    )
    strategy.train(digits_benchmark.train_stream[0])  # paused: full experience
    assert timer.times == [] and strategy.clock.train_exp_iterations > 3
    timer.record = True
    strategy.train(digits_benchmark.train_stream[1])
    assert len(timer.times) == 3 and strategy.clock.train_exp_iterations == 3
    assert all(t > 0 for t in timer.times)
    with pytest.raises(ValueError, match="limit"):
        IterationTimer(limit=0)
