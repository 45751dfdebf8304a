"""Each plugin with each Avalanche replay setup, on real data (split digits)."""

from __future__ import annotations

import math

import pytest
import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.training.plugins import EvaluationPlugin, LwFPlugin

from avalanche_mixplugins import GradMixPlugin, MixupPlugin
from tests.plugins.setups import ACC, PLUGINS, SETUPS, LossRecorder, run
from tests.support.cl import cl_strategy, quiet_evaluator
from tests.support.nets import make_mlp


@pytest.fixture(scope="module")
def baselines(digits_benchmark):
    return {s: run(s, digits_benchmark)[0] for s in SETUPS}


@pytest.mark.parametrize("setup", [s for s in SETUPS if s != "naive"])
def test_gradmix_scores_previous_class_pairs_on_every_replay_setup(
    setup, digits_benchmark, baselines
):
    """On the second experience GradMix finds the buffer samples of each setup:
    pairs between a previous class and a current one get evidence, and the
    mixed term changes every step's loss."""
    plugin = GradMixPlugin(seed=1, no_buffer="mixup")
    losses, _, _ = run(setup, digits_benchmark, plugin)
    base = baselines[setup]
    assert len(losses) == len(base)
    # every step of both experiences adds a mixed term (plain Mixup on the first)
    assert all(a != b for a, b in zip(losses, base))
    old, new = (
        [int(c) for c in e.classes_in_this_experience]
        for e in digits_benchmark.train_stream[:2]
    )
    seen = plugin.scored_pairs
    assert seen[old][:, new].all() and seen[new][:, old].all()
    assert torch.isfinite(plugin.pair_scores).all()


def test_same_seed_same_result(digits_benchmark):
    a = run("er_ace", digits_benchmark, GradMixPlugin(seed=5, no_buffer="mixup"))
    b = run("er_ace", digits_benchmark, GradMixPlugin(seed=5, no_buffer="mixup"))
    c = run("er_ace", digits_benchmark, GradMixPlugin(seed=6, no_buffer="mixup"))
    assert a[0] == b[0] and a[1] == b[1]
    assert a[0] != c[0]


def test_composes_with_lwf(digits_benchmark):
    plain, _, _ = run(
        "naive_replay", digits_benchmark, GradMixPlugin(seed=1, no_buffer="mixup")
    )
    with_lwf, _, strategy = run(
        "naive_replay",
        digits_benchmark,
        GradMixPlugin(seed=1, no_buffer="mixup"),
        extra=[LwFPlugin(alpha=1.0)],
    )
    n_first = len(digits_benchmark.train_stream[0].dataset) // 32 + 1
    # LwF has nothing to distil on the first experience, then adds its term
    assert plain[:n_first] == with_lwf[:n_first]
    assert plain[n_first:] != with_lwf[n_first:]
    assert all(math.isfinite(v) for v in with_lwf)


def _train_two(strategy, bench):
    for exp in bench.train_stream[:2]:
        strategy.train(exp)
    return strategy.eval(bench.test_stream[:2])[ACC]


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
    strategy = cl_strategy(
        "er_ace",
        model,
        [plugin, rec],
        momentum=0.9,
        evaluator=quiet_evaluator(accuracy_metrics(stream=True)),
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
    plugin = GradMixPlugin(seed=0, no_buffer="mixup")
    rec = LossRecorder()
    strategy = cl_strategy(
        "naive_replay",
        model,
        [plugin, rec],
        mem_size=64,
        momentum=0.9,
        evaluator=quiet_evaluator(accuracy_metrics(stream=True)),
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for exp in digits_benchmark.train_stream[:2]:
            strategy.train(exp)
    assert all(math.isfinite(v) for v in rec.losses)
    assert plugin.last_loss is not None and plugin.last_loss.dtype == torch.float32
    assert plugin.scored_pairs.any() and torch.isfinite(plugin.pair_scores).all()


@pytest.mark.parametrize("setup", ["naive_replay", "er_ace", "der"])
@pytest.mark.parametrize("name", ["mixup", "cutmix", "gradmix"])
def test_labels_outside_the_outputs_raise(setup, name, digits_benchmark):
    """A head with fewer outputs than the stream's classes fails at the first
    step with a ValueError that names the label and says what to do, before
    the strategy's criterion (whose IndexError would not)."""
    exp = digits_benchmark.train_stream[0]
    top = max(int(c) for c in exp.classes_in_this_experience)
    assert top >= 2
    torch.manual_seed(0)
    strategy = cl_strategy(setup, make_mlp(num_classes=2), [PLUGINS[name]()])
    with pytest.raises(ValueError) as err:
        strategy.train(exp)
    message = str(err.value)
    assert f"label {top} is outside the model's 2 outputs" in message
    assert "one output per class" in message
    assert strategy.clock.train_exp_iterations == 0  # no step was taken


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
    plugin = GradMixPlugin(seed=0, no_buffer="mixup")
    # lr 0: NaN never reaches the weights
    strategy = cl_strategy("naive_replay", model, [NaNOnce(), plugin], lr=0.0)
    with pytest.warns(RuntimeWarning, match="not finite"):
        for exp in digits_benchmark.train_stream[:2]:
            strategy.train(exp)
    assert plugin.skipped_steps > 0
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert torch.isfinite(plugin.pair_scores).all() and plugin.scored_pairs.any()


def test_helpful_fraction_reaches_avalanche_loggers(digits_benchmark, tmp_path, capsys):
    from avalanche.logging import InteractiveLogger, TensorboardLogger

    from avalanche_mixplugins.experiments.plots import pair_score_heatmap

    model = make_mlp()
    plugin = GradMixPlugin(seed=0, no_buffer="mixup")
    evaluator = EvaluationPlugin(
        accuracy_metrics(stream=True),
        loggers=[
            InteractiveLogger(),
            TensorboardLogger(tb_log_dir=str(tmp_path / "tb")),
        ],
    )
    strategy = cl_strategy("naive_replay", model, [plugin], evaluator=evaluator)
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
