"""Each plugin with each Avalanche replay setup, on real data (split digits)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
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
    "gradmix": lambda: GradMixPlugin(seed=1, no_buffer="mixup"),
    "gradmix_cutmix": lambda: GradMixPlugin(seed=1, no_buffer="mixup", mix="cutmix"),
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


@pytest.mark.parametrize("setup", [s for s in SETUPS if s != "no_buffer"])
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


# ------------------------------------------------ mixed inputs and mixed loss
@pytest.fixture(scope="module")
def distinct_digits():
    """Split digits with a little uniform noise on every pixel, so no two
    samples share a pixel value: a mixed input then tells exactly which samples
    it was made of (and, for CutMix, where the box is)."""
    from avalanche.benchmarks import nc_benchmark
    from torch.utils.data import TensorDataset

    from avalanche_mixplugins.experiments.datasets import load_digits_tensors

    x_tr, y_tr, x_te, y_te = load_digits_tensors(seed=0)
    g = torch.Generator().manual_seed(0)
    x_tr = x_tr + 0.01 * torch.rand(x_tr.shape, generator=g)
    train, test = TensorDataset(x_tr, y_tr), TensorDataset(x_te, y_te)
    train.targets, test.targets = y_tr.tolist(), y_te.tolist()
    return nc_benchmark(
        train,
        test,
        5,
        task_labels=False,
        seed=0,
        class_ids_from_zero_in_each_exp=False,
    )


def pool_of(strategy, setup: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The samples trained on this step, where each strategy keeps them, and how
    many of them come from the strategy's buffer outside the minibatch."""
    x, y = strategy.mb_x, strategy.mb_y
    if setup in ("er_ace", "er_aml") and strategy.replay_loader is not None:
        bx, by = strategy.mb_buffer_x, strategy.mb_buffer_y
        return torch.cat([x, bx]), torch.cat([y, by]), len(bx)
    # Naive + ReplayPlugin: memory rows inside the batch; DER: prepended rows
    return x, y, 0


def recover_mixup(x_mix, pool):
    """Brute force: for each mixed row, the pool sample ``j`` and ``lam`` with
    ``x_mix[i] = lam x_i + (1 - lam) x_j`` (``j = -1``: the row is ``x_i``)."""
    X, M = pool.flatten(1).double(), x_mix.flatten(1).double()
    partner, lam = [], []
    for i in range(len(X)):
        if torch.allclose(M[i], X[i], rtol=0, atol=1e-6):
            partner.append(-1)
            lam.append(1.0)
            continue
        d = X[i] - X  # (N, D)
        r = M[i] - X
        lj = (r * d).sum(1) / (d * d).sum(1).clamp_min(1e-12)
        res = (r - lj.view(-1, 1) * d).norm(dim=1)
        res[i] = float("inf")
        j = int(res.argmin())
        assert res[j] < 1e-4, f"row {i} is not a mix of two samples of the step"
        assert -1e-6 <= lj[j] <= 1 + 1e-6, f"row {i}: lam {float(lj[j])} not in [0, 1]"
        partner.append(j)
        lam.append(float(lj[j]))
    return torch.tensor(partner), torch.tensor(lam, dtype=torch.float64)


def recover_cutmix(x_mix, pool):
    """Brute force: for each mixed row, the pool sample pasted in, and the label
    weight ``1 - box area / image area`` (the box must be a rectangle)."""
    partner, lam = [], []
    h, w = pool.shape[-2:]
    for i in range(len(pool)):
        inside = (x_mix[i] != pool[i]).any(0)  # (H, W)
        if not inside.any():
            partner.append(-1)
            lam.append(1.0)
            continue
        rows = torch.nonzero(inside.any(1)).flatten()
        cols = torch.nonzero(inside.any(0)).flatten()
        box = inside[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        assert box.all(), f"row {i}: the pasted region is not a box"
        src = [
            j
            for j in range(len(pool))
            if j != i and torch.equal(x_mix[i][:, inside], pool[j][:, inside])
        ]
        assert len(src) >= 1, f"row {i}: the box is not taken from a sample"
        assert torch.equal(x_mix[i][:, ~inside], pool[i][:, ~inside])
        partner.append(src[0])
        lam.append(1.0 - float(inside.sum()) / (h * w))
    return torch.tensor(partner), torch.tensor(lam, dtype=torch.float64)


class MixAudit(SupervisedPlugin):
    """Put one instance before and one after the mixing plugin: records, in
    ``before_backward``, the pool, the mixed inputs (a forward pre-hook on the
    model between the two) and the loss the plugin added."""

    def __init__(self, setup: str, mode: str, shared=None):
        super().__init__()
        self.setup, self.mode = setup, mode
        self.shared = shared if shared is not None else {"records": [], "on": False}

    def after(self):
        return MixAudit(self.setup, self.mode, self.shared)

    def before_training_exp(self, strategy, **kwargs):
        if "hook" not in self.shared:

            def hook(module, args):
                if self.shared["on"]:
                    self.shared["inputs"].append(args[0].detach().clone())

            self.shared["hook"] = strategy.model.register_forward_pre_hook(hook)

    def before_backward(self, strategy, **kwargs):
        sh = self.shared
        if not sh["on"]:  # first instance: before the mixing plugin
            sh["on"], sh["inputs"] = True, []
            sh["loss_before"] = float(strategy.loss)
            return
        sh["on"] = False
        pool, y, n_extra = pool_of(strategy, self.setup)
        added = float(strategy.loss) - sh["loss_before"]
        mixed = sh["inputs"]
        assert len(mixed) <= 1, "the mixing plugin ran more than one forward"
        current = [int(c) for c in strategy.experience.classes_in_this_experience]
        record = {
            "exp": strategy.experience.current_experience,
            "pool": pool.clone(),
            "y": y.clone(),
            "n_extra": n_extra,
            "is_old": ~torch.isin(y, torch.tensor(current)),
            "added": added,
            "x_mix": mixed[0] if mixed else None,
        }
        if mixed:
            with torch.no_grad():  # the weights the plugin's loss was computed at
                record["logits"] = strategy.model(mixed[0]).double()
        sh["records"].append(record)


def audited_run(setup, bench, plugin, mode):
    audit = MixAudit(setup, mode)
    losses, _, strategy = run(
        setup, bench, plugin=audit, extra=[plugin, audit.after()], n_exp=2
    )
    return audit.shared["records"], strategy


def duplicated_rows(pool):
    flat = pool.flatten(1)
    same = (flat.unsqueeze(0) == flat.unsqueeze(1)).all(-1)
    return same.sum(1) > 1


def asymmetric_logits(z, y, old, partner, setup):
    """ER-ACE / ER-AML: a mix of two current samples is trained over the classes
    of the step's current samples only (the strategies' asymmetric
    cross-entropy); every other row keeps all logits."""
    if setup not in ("er_ace", "er_aml"):
        return z
    present = torch.zeros(z.shape[1], dtype=torch.bool)
    present[y[~old]] = True
    masked = (~old & ~old[partner]).view(-1, 1) & ~present.view(1, -1)
    return z.masked_fill(masked, float("-inf"))


@pytest.mark.parametrize("setup", ["naive_replay", "er_ace", "er_aml", "der"])
@pytest.mark.parametrize(
    "name, mode",
    [
        ("mixup", "mixup"),
        ("cutmix", "cutmix"),
        ("gradmix", "mixup"),
        ("gradmix_cutmix", "cutmix"),
    ],
)
def test_mixed_loss_and_inputs_match_an_independent_recomputation(
    setup, name, mode, distinct_digits
):
    """Every step, each mixed input is a convex combination (Mixup) or a box
    paste (CutMix) of two distinct samples of the step, found by brute force
    among the samples each strategy trains on (ER-ACE/ER-AML: minibatch and
    ``mb_buffer_x``; DER: with the prepended buffer rows); and the loss the
    plugin adds is ``weight`` times the mean over mixed rows of
    ``lam CE(f(x~), y_i) + (1 - lam) CE(f(x~), y_j)``, recomputed with
    ``F.cross_entropy`` from the recovered partners and weights. (GradMix: the
    inputs only, its loss is weighted by its pair scores.)"""
    weight = 0.5
    plugin = {
        "mixup": lambda: MixupPlugin(seed=2, weight=weight),
        "cutmix": lambda: CutMixPlugin(seed=2, weight=weight),
        "gradmix": lambda: GradMixPlugin(seed=2, no_buffer="mixup", weight=weight),
        "gradmix_cutmix": lambda: GradMixPlugin(
            seed=2, no_buffer="mixup", weight=weight, mix="cutmix"
        ),
    }[name]()
    records, _ = audited_run(setup, distinct_digits, plugin, mode)
    recover = recover_cutmix if mode == "cutmix" else recover_mixup
    n_checked = 0
    for r in records:
        assert r["x_mix"] is not None, "a step of pairing='all' was not mixed"
        pool, y = r["pool"], r["y"]
        assert r["x_mix"].shape == pool.shape  # one mixed row per sample
        partner, lam = recover(r["x_mix"], pool)
        # every row without an identical twin in the step really is mixed
        # (CutMix may draw an empty box)
        if name.startswith("gradmix"):
            # GradMix leaves unmixed a row whose every pair is known detrimental
            continue
        if mode == "mixup":
            assert (partner >= 0)[~duplicated_rows(pool)].all()
        if r["exp"] == 1 and r["n_extra"]:
            # rows of the strategy's own buffer are mixed too
            assert (partner[-r["n_extra"] :] >= 0).any()
        j = torch.where(partner >= 0, partner, torch.arange(len(pool)))
        z = asymmetric_logits(r["logits"], y, r["is_old"], j, setup)
        ce_i = F.cross_entropy(z, y, reduction="none")
        ce_j = F.cross_entropy(z, y[j], reduction="none")
        expected = (lam * ce_i + (1 - lam) * ce_j).mean()
        assert r["added"] == pytest.approx(weight * float(expected), abs=1e-5)
        n_checked += 1
    if not name.startswith("gradmix"):
        n_steps = sum(
            len(e.dataset) // 32 + 1 for e in distinct_digits.train_stream[:2]
        )
        assert n_checked == n_steps


@pytest.mark.parametrize("pairing", ["buffer_current", "current"])
@pytest.mark.parametrize("setup", ["naive_replay", "er_ace", "der"])
def test_buffer_samples_are_found_per_strategy(setup, pairing, distinct_digits):
    """Buffer (previous-class) samples are found wherever the strategy keeps
    them (Naive + ReplayPlugin: in the batch, told apart by label; ER-ACE:
    ``mb_buffer_x``; DER: prepended to the batch). With
    ``pairing="buffer_current"`` every pair joins a previous-class and a
    current-class sample and nothing is mixed before a buffer exists; with
    ``"current"`` buffer samples are never mixed and do not count in the mean
    of the mixed loss."""
    plugin = MixupPlugin(seed=3, pairing=pairing)
    records, _ = audited_run(setup, distinct_digits, plugin, "mixup")
    second = [r for r in records if r["exp"] == 1]
    if pairing == "buffer_current":
        first = [r for r in records if r["exp"] == 0]
        assert all(r["x_mix"] is None and r["added"] == 0.0 for r in first)
    assert second and all(r["x_mix"] is not None for r in second)
    for r in second:
        partner, lam = recover_mixup(r["x_mix"], r["pool"])
        old = r["is_old"]
        assert old.any() and (~old).any()
        if setup == "er_ace":  # previous classes only come from mb_buffer_x
            assert not old[: len(old) - r["n_extra"]].any()
        if setup == "der":  # DER prepends its buffer rows
            assert old[: int(old.sum())].all()
        mixed = partner >= 0
        if pairing == "buffer_current":
            assert mixed.all()
            assert (old != old[partner]).all()
            counted = torch.ones_like(old)
        else:
            assert not mixed[old].any()
            assert (~old[partner[mixed]]).all()
            assert mixed[~old & ~duplicated_rows(r["pool"])].all()
            counted = ~old
        y = r["y"]
        j = torch.where(mixed, partner, torch.arange(len(y)))
        z = asymmetric_logits(r["logits"], y, old, j, setup)
        per = lam * F.cross_entropy(z, y, reduction="none") + (1 - lam) * (
            F.cross_entropy(z, y[j], reduction="none")
        )
        assert r["added"] == pytest.approx(float(per[counted].mean()), abs=1e-5)


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
    plugin = GradMixPlugin(seed=0, no_buffer="mixup")
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
    model = make_mlp(num_classes=2)
    kw = dict(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
        train_mb_size=32,
        device="cpu",
        evaluator=EvaluationPlugin(loggers=[]),
        plugins=[PLUGINS[name]()],
    )
    if setup == "naive_replay":
        kw["plugins"].insert(0, ReplayPlugin(mem_size=100))
        strategy = Naive(**kw)
    elif setup == "er_ace":
        strategy = ER_ACE(mem_size=100, batch_size_mem=16, **kw)
    else:
        strategy = DER(mem_size=100, batch_size_mem=16, **kw)
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
    from avalanche_mixplugins.experiments.timing import IterationTimer

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


def test_mixup_and_cutmix_share_one_implementation_and_signature():
    import inspect

    from avalanche_mixplugins.plugins import RandomMixPlugin

    expected = ["alpha", "prob", "weight", "pairing", "asymmetric", "seed"]
    for cls, mode in ((MixupPlugin, "mixup"), (CutMixPlugin, "cutmix")):
        assert issubclass(cls, RandomMixPlugin) and cls.mix_mode == mode
        params = inspect.signature(cls).parameters.values()
        assert [p.name for p in params] == expected
        assert all(p.kind is p.KEYWORD_ONLY for p in params)
        assert cls(seed=0).mix == mode
    assert "Zhang" in MixupPlugin.__doc__ and "2018" in MixupPlugin.__doc__
    assert "Yun" in CutMixPlugin.__doc__ and "2019" in CutMixPlugin.__doc__


def test_old_names_still_import_with_a_deprecation_warning():
    from avalanche_mixplugins.experiments.timing import IterationTimer
    from avalanche_mixplugins.plugins.base import MixingStepBatch

    with pytest.warns(DeprecationWarning, match="plugins.base.MixingStepBatch"):
        from avalanche_mixplugins.plugins.base import MixedBatch
    assert MixedBatch is MixingStepBatch
    with pytest.warns(DeprecationWarning, match="experiments.timing.IterationTimer"):
        from avalanche_mixplugins.timing import IterationTimer as Old
    assert Old is IterationTimer
