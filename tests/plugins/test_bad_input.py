"""Every bad input of the mixing plugins gets a clear answer
(docs/bad_input.md), on real data: missing heads and buffers, tiny batches,
NaN/Inf inside a continual-learning run.

Cases already covered elsewhere are listed in docs/bad_input.md with their
test; this module holds the others.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from avalanche.core import SupervisedPlugin
from torch import nn

from avalanche_mixplugins import GradMixPlugin, MixupPlugin
from avalanche_mixplugins.checkpoint import load_checkpoint, save_checkpoint
from avalanche_mixplugins.experiments.streams import split_digits
from tests.support.cl import RecordingGradMix, cl_strategy, replay_storage
from tests.support.nets import make_mlp


# ------------------------------------------------------------ mixing plugins
def test_no_linear_head_names_the_full_gradient_space(digits_benchmark):
    conv_only = nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten())
    with pytest.raises(ValueError, match='grad_space="full"'):
        cl_strategy("naive", conv_only, [GradMixPlugin(seed=0)]).train(
            digits_benchmark.train_stream[0]
        )
    # and the suggested option trains that model
    conv_only = nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten())
    plugin = GradMixPlugin(seed=0, grad_space="full")
    strategy = cl_strategy("naive_replay", conv_only, [plugin], mem_size=40)
    for exp in digits_benchmark.train_stream[:2]:
        strategy.train(exp)
    assert plugin.scored_pairs.any()


def test_labels_outside_the_outputs_fail_before_the_criterion(digits_benchmark):
    exp = next(
        e
        for e in digits_benchmark.train_stream
        if max(e.classes_in_this_experience) >= 2
    )
    with pytest.raises(ValueError, match="outside the model's 2 outputs"):
        cl_strategy("naive", make_mlp(num_classes=2), [MixupPlugin(seed=0)]).train(exp)


def test_one_sample_batches_add_no_mixed_loss(digits_benchmark):
    data = digits_benchmark.train_stream[0]
    plugin = MixupPlugin(seed=0)
    model = make_mlp()
    strategy = cl_strategy("naive", model, [plugin], train_mb_size=1)
    strategy.train(data)
    assert plugin.last_loss is None  # nothing to pair with
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_single_class_batches_train():
    single = split_digits(n_experiences=10, seed=0)
    plugin = GradMixPlugin(seed=0)
    strategy = cl_strategy("naive_replay", make_mlp(), [plugin], mem_size=40)
    for exp in single.train_stream[:2]:
        assert len(exp.classes_in_this_experience) == 1
        strategy.train(exp)
    assert plugin.last_loss is not None and torch.isfinite(plugin.last_loss)
    assert torch.isfinite(plugin.pair_scores).all()


def test_empty_buffer_warns_and_says_to_add_replay(digits_benchmark, tmp_path):
    plugin = GradMixPlugin(seed=0)
    strategy = cl_strategy("naive_replay", make_mlp(), [plugin], mem_size=0)
    with pytest.warns(
        RuntimeWarning, match=r"no replay buffer.*ReplayPlugin\(mem_size=500\)"
    ):
        for exp in digits_benchmark.train_stream[:2]:
            strategy.train(exp)
    assert not plugin.scored_pairs.any()
    # an empty buffer is also saved and restored
    save_checkpoint(tmp_path / "c.pt", strategy)
    fresh = cl_strategy("naive_replay", make_mlp(), [GradMixPlugin(seed=0)], mem_size=0)
    assert load_checkpoint(tmp_path / "c.pt", fresh)["next_experience"] == 2
    assert len(replay_storage(fresh).buffer) == 0


# ------------------------------------------- NaN / Inf inside a CL training run
class Poisoner(SupervisedPlugin):
    """Puts a non-finite value into one place of every third step of the second
    experience: a previous-class input, a current-class input, one row of the
    model's output (a forward hook, so GradMix's capture sees it) or the
    strategy's loss."""

    def __init__(self, site: str):
        super().__init__()
        self.site, self.n, self.poisoned = site, 0, False

    def _on(self, strategy) -> bool:
        return strategy.is_training and strategy.experience.current_experience == 1

    def before_training_exp(self, strategy, **kwargs):
        if self.site == "logits" and not hasattr(self, "_hook"):
            self._hook = strategy.model.register_forward_hook(self._logits)

    def _logits(self, module, args, output):
        if self.poisoned and self.site == "logits":
            output = output.clone()
            output[:, 0] = float("nan")  # one class column: reaches every loss form
            return output
        return None

    def before_training_iteration(self, strategy, **kwargs):
        self.n += 1
        self.poisoned = self._on(strategy) and self.n % 3 == 0

    def before_forward(self, strategy, **kwargs):
        if not self.poisoned or not self.site.startswith("input"):
            return
        old_cls = strategy.experience.classes_in_this_experience
        current = torch.tensor(sorted(old_cls))
        if (
            self.site == "input_buffer"
            and getattr(strategy, "mb_buffer_x", None) is not None
        ):
            x = strategy.mb_buffer_x.clone()
            x[0] = float("nan")
            strategy.mb_buffer_x = x
            return
        x = strategy.mbatch[0].clone()
        is_old = ~torch.isin(strategy.mbatch[1], current)
        rows = torch.nonzero(is_old if self.site == "input_buffer" else ~is_old)
        if len(rows):
            x[int(rows[0, 0])] = (
                float("nan") if self.site == "input_buffer" else float("inf")
            )
            strategy.mbatch[0] = x

    def before_backward(self, strategy, **kwargs):
        if self.poisoned and self.site == "loss":
            strategy.loss = strategy.loss * float("nan")


class SkipNonFiniteSteps(SupervisedPlugin):
    """Zero the gradients of a step that has a non-finite one (as AMP's
    GradScaler skips such steps), so the weights stay finite."""

    def __init__(self):
        super().__init__()
        self.skipped = 0

    def after_backward(self, strategy, **kwargs):
        grads = [p.grad for p in strategy.model.parameters() if p.grad is not None]
        if not all(torch.isfinite(g).all() for g in grads):
            self.skipped += 1
            for g in grads:
                g.zero_()


class TableAudit(SupervisedPlugin):
    """After GradMix (in ``before_backward``), compares the state tables before
    and after the step with the step's inner products."""

    def __init__(self, plugin: RecordingGradMix, poisoner: Poisoner):
        super().__init__()
        self.plugin, self.poisoner = plugin, poisoner
        self.steps: list[dict] = []

    def before_training_iteration(self, strategy, **kwargs):
        self.plugin.last_batch = None
        self.plugin.last_inner = None
        self._scores = self.plugin.pair_scores
        self._seen = self.plugin.scored_pairs

    def before_backward(self, strategy, **kwargs):
        b, inner = self.plugin.last_batch, self.plugin.last_inner
        if b is None or inner is None:
            return
        self.steps.append(
            {
                "poisoned": self.poisoner.poisoned,
                "before": (self._scores, self._seen),
                "after": (self.plugin.pair_scores, self.plugin.scored_pairs),
                "y": b.y.cpu(),
                "y_partner": b.y[b.partner].cpu(),
                "active": b.active.cpu(),
                "inner": inner.cpu(),
            }
        )


@pytest.mark.parametrize("setup", ["naive_replay", "er_ace"])
@pytest.mark.parametrize("site", ["input_buffer", "input_current", "logits", "loss"])
def test_non_finite_values_never_enter_gradmix_state(digits_benchmark, setup, site):
    """NaN/Inf in a buffer input, a current input, the logits or the loss, on
    every third step of the second experience: the pair-score matrix stays
    finite; a pair's score and seen flag change only with finite evidence of
    that pair in the step (a pair whose candidates all had non-finite inner
    products keeps both); the per-experience history stays finite; the weights
    stay finite."""
    torch.manual_seed(0)
    model = make_mlp()
    plugin = RecordingGradMix(seed=0)
    poisoner = Poisoner(site)
    audit = TableAudit(plugin, poisoner)
    guard = SkipNonFiniteSteps()
    plugins = [poisoner, plugin, audit, guard]
    strategy = cl_strategy(setup, model, plugins)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        for exp in digits_benchmark.train_stream[:2]:
            strategy.train(exp)
    said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]

    poisoned = [s for s in audit.steps if s["poisoned"]]
    assert len(poisoned) >= 2 and len(audit.steps) > len(poisoned)
    if site != "loss":
        # the poison reached GradMix's inner products on those steps
        assert all(not torch.isfinite(s["inner"]).all() for s in poisoned)
        assert guard.skipped >= len(poisoned)
        # and the mixed term of those steps was left out, not added as NaN
        assert plugin.skipped_steps == len(poisoned)
        assert any("mixed loss is not finite" in m for m in said)  # and said so
    updated_somewhere = False
    for s in audit.steps:
        (s0, seen0), (s1, seen1) = s["before"], s["after"]
        # pair-score table
        assert torch.isfinite(s1).all()
        # evidence per unordered pair: finite inner products of active rows
        n = s1.shape[0]
        finite = s["active"] & torch.isfinite(s["inner"])
        evidence = torch.zeros(n, n, dtype=torch.bool)
        evidence[s["y"][finite], s["y_partner"][finite]] = True
        evidence |= evidence.T.clone()
        grown = seen0.shape[0]
        s1_old, seen1_old = s1[:grown, :grown], seen1[:grown, :grown]
        ev_old = evidence[:grown, :grown]
        # seen mask: set only with finite evidence, never cleared
        assert not (seen1 & ~evidence)[:grown, :grown][~seen0].any()
        assert (seen1_old | ~seen0).all()
        assert not (seen1 & ~evidence)[grown:].any()
        # scores move only with finite evidence
        assert torch.equal(s1_old[~ev_old], s0[~ev_old])
        updated_somewhere |= bool((s1_old != s0).any())
    assert updated_somewhere
    # history table (one entry per experience)
    assert len(plugin.history) == 2
    last = plugin.history[-1]
    assert torch.isfinite(last["scores"]).all()
    assert 0.0 <= last["helpful_fraction"] <= 1.0
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ------------------------------------------------------ pseudo-labelling maths


# -------------------------------------------------------------- SSL strategy


# ------------------------------------------------------------------- backbones
