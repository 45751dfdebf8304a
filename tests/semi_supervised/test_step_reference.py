"""One semi-supervised training iteration replayed by a plain-PyTorch reference.

The strategy trains one iteration (FixMatch or SoftMatch, with and without
CalibrateMix) on digits; a recorder plugin keeps what went in (the weights,
the labeled batch, the weak and strong unlabeled views, the EMA teacher) and
what came out (the objective, the weights after the optimiser step, the
teacher after it). The reference below redoes the iteration from those
inputs with nothing of the package but the model: one forward of
``cat(labeled, weak, strong)``, the pseudo-labelling rule written from the
papers (FixMatch: Sohn et al. 2020; SoftMatch: Chen et al. 2023, with
uniform distribution alignment), ``CE + lambda_u * consistency``, for
CalibrateMix (Rahman et al., arXiv:2511.12964) the mixed inputs rebuilt from
the recovered pairs and ``mix_weight * (L_mix1 + L_mix2)`` with the sigmoid
BCE of the release, then autograd, the SGD step by hand and the EMA teacher
``d * teacher + (1 - d) * weights after the step``. Loss weights are set away
from 1 so that a dropped or misplaced weight shows.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin

from ssl_ext.calibratemix_plugin import CalibrateMixPlugin
from tests.support.nets import two_conv_cnn
from tests.support.semi_supervised import ssl_digits, ssl_strategy

LR, MOMENTUM, EMA_DECAY = 0.05, 0.9, 0.8
LAMBDA_U, MIX_WEIGHT, THRESHOLD, SOFTMATCH_M = 0.6, 0.7, 0.1297, 0.1


class Recorder(SupervisedPlugin):
    """Inputs and outputs of the first training iteration (last in the list)."""

    def __init__(self, cm=None):
        super().__init__()
        self.cm = cm
        self.seen = {}

    def before_forward(self, strategy, **kwargs):
        if self.seen:
            return
        self.seen["model"] = copy.deepcopy(strategy.model.state_dict())
        self.seen["ema"] = copy.deepcopy(strategy.ema.module.state_dict())
        for name in ("mb_x", "mb_y", "mb_ulb_weak", "mb_ulb_strong"):
            self.seen[name] = getattr(strategy, name).detach().clone()

    def before_backward(self, strategy, **kwargs):
        if "loss" in self.seen:
            return
        self.seen["loss"] = strategy.loss.detach().clone()
        self.seen["mixed"] = None if self.cm is None else self.cm.mixed

    def after_training_iteration(self, strategy, **kwargs):
        if "after" in self.seen:
            return
        self.seen["after"] = copy.deepcopy(strategy.model.state_dict())
        self.seen["ema_after"] = copy.deepcopy(strategy.ema.module.state_dict())
        self.seen["ema_steps"] = strategy.ema_steps


class ReferenceSoftMatch:
    """SoftMatch's weights (Chen et al., ICLR 2023, Eq. 7; USB's defaults)."""

    def __init__(self, momentum=0.999, n_sigma=2.0):
        self.m, self.n_sigma = momentum, n_sigma
        self.p_model = None
        self.mu = self.var = None

    def __call__(self, logits):
        probs = torch.softmax(logits.detach(), dim=1)
        c = probs.shape[1]
        batch = probs.mean(dim=0)
        self.p_model = (
            batch
            if self.p_model is None
            else self.m * self.p_model + (1 - self.m) * batch
        )
        aligned = probs / self.p_model
        aligned = aligned / aligned.sum(dim=1, keepdim=True)
        conf = aligned.max(dim=1).values
        if self.mu is None:
            self.mu, self.var = torch.tensor(1.0 / c), torch.tensor(1.0)
        self.mu = self.m * self.mu + (1 - self.m) * conf.mean()
        self.var = self.m * self.var + (1 - self.m) * conf.var()
        gap = torch.minimum(conf - self.mu, torch.zeros_like(conf))
        weights = torch.exp(-(gap**2) / (2 * self.var / self.n_sigma**2))
        return logits.argmax(dim=1), weights


def fixmatch(logits):
    probs = torch.softmax(logits.detach(), dim=1)
    conf, targets = probs.max(dim=1)
    return targets, (conf >= THRESHOLD).float()


def base_loss(rule, logits_lb, y, logits_weak, logits_strong):
    targets, weights = rule(logits_weak)
    sup = F.cross_entropy(logits_lb, y)
    nll = -torch.log_softmax(logits_strong, dim=1)[torch.arange(len(targets)), targets]
    unsup = (weights * nll).sum() / len(targets)  # masked samples count (FixMatch)
    return sup + LAMBDA_U * unsup, targets, weights


def bce_mixed(logits, target):
    """Sigmoid BCE averaged over classes, per sample (the release's loss)."""
    ls = F.logsigmoid(logits)
    return -(target * ls + (1 - target) * F.logsigmoid(-logits)).mean(dim=1)


def reference_step(seen, algorithm, mode):
    model = two_conv_cnn()
    model.load_state_dict(seen["model"])
    model.train()
    x, y = seen["mb_x"], seen["mb_y"]
    weak, strong = seen["mb_ulb_weak"], seen["mb_ulb_strong"]
    b, u = x.shape[0], weak.shape[0]
    rule = fixmatch if algorithm == "fixmatch" else ReferenceSoftMatch(SOFTMATCH_M)

    out = model(torch.cat([x, weak, strong]))
    loss, targets, weights = base_loss(rule, out[:b], y, out[b : b + u], out[b + u :])
    checks = {"weights": weights}
    mixed = seen["mixed"]
    if mixed is not None:
        lam = mixed.lam
        for g in (0, 1):  # one lambda per group, two different draws
            assert bool((lam[mixed.group == g] == lam[mixed.group == g][0]).all())
        assert float(lam[mixed.group == 0][0]) != float(lam[mixed.group == 1][0])
        lam4 = lam.view(-1, 1, 1, 1)
        x_mix = lam4 * x[mixed.labeled] + (1 - lam4) * weak[mixed.partner]
        torch.testing.assert_close(mixed.x, x_mix, rtol=0, atol=1e-6)
        c = out.shape[1]
        target = lam.view(-1, 1) * F.one_hot(y[mixed.labeled], c) + (
            1 - lam.view(-1, 1)
        ) * F.one_hot(targets[mixed.partner], c)
        if mode == "fast":
            z_mix = model(x_mix)
        else:  # the release: (labeled, mixed, weak, strong) again, base loss again
            out2 = model(torch.cat([x, x_mix, weak, strong]))
            z_mix = out2[b : 2 * b]
            loss2, _, _ = base_loss(
                rule, out2[:b], y, out2[2 * b : 2 * b + u], out2[2 * b + u :]
            )
            loss = loss + loss2
        per = bce_mixed(z_mix, target.float())
        valid = mixed.valid.float()
        mix = sum(
            (per * valid * (mixed.group == g)).sum()
            / (valid * (mixed.group == g)).sum().clamp_min(1)
            for g in (0, 1)
        )
        loss = loss + MIX_WEIGHT * mix
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            # SGD with momentum: the first step's buffer is the gradient
            p -= LR * p.grad
    after = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ema = {
        k: EMA_DECAY * v + (1 - EMA_DECAY) * after[k]
        if v.is_floating_point()
        else after[k]
        for k, v in seen["ema"].items()
    }
    return loss.detach(), after, ema, checks


CASES = [
    ("fixmatch", None),
    ("softmatch", None),
    ("fixmatch", "fast"),
    ("softmatch", "fast"),
    ("softmatch", "faithful"),
]


@pytest.mark.parametrize(
    "algorithm,mode", CASES, ids=[f"{a}-{m or 'base'}" for a, m in CASES]
)
def test_one_iteration_equals_a_plain_pytorch_reference(algorithm, mode):
    bench, unlabeled = ssl_digits(per_class=4, n_test=20, n_unlabeled=200)
    torch.manual_seed(3)
    model = two_conv_cnn()
    plugins = []
    cm = None
    if mode is not None:
        cm = CalibrateMixPlugin(
            mode=mode,
            warmup=0,
            loss="bce",
            mix_weight=MIX_WEIGHT,
            k_fraction=0.2,
            seed=1,
        )
        plugins.append(cm)
    rec = Recorder(cm)
    strategy = ssl_strategy(
        model,
        unlabeled,
        [*plugins, rec],
        lr=LR,
        momentum=MOMENTUM,
        algorithm=algorithm,
        algorithm_kwargs={"threshold": THRESHOLD}
        if algorithm == "fixmatch"
        else {"momentum": SOFTMATCH_M},
        lambda_u=LAMBDA_U,
        train_iterations=1,
        ema_decay=EMA_DECAY,
    )
    strategy.train(bench.train_stream[0])
    seen = rec.seen
    if mode is not None:
        assert seen["mixed"] is not None and bool(seen["mixed"].valid.all())

    loss, after, ema, checks = reference_step(seen, algorithm, mode)
    w = checks["weights"]
    # the unlabeled term is neither empty nor complete (its weight matters)
    assert 0 < float(w.sum()) < len(w) and bool((w > 0).any())
    torch.testing.assert_close(seen["loss"].reshape(()), loss, rtol=0, atol=1e-5)
    for key, value in after.items():
        torch.testing.assert_close(
            seen["after"][key], value, rtol=0, atol=1e-5, msg=key
        )
        if value.is_floating_point() and "weight" in key:
            assert not torch.equal(value, seen["model"][key]), key  # the step moved it
    assert seen["ema_steps"] == 1
    for key, value in ema.items():
        torch.testing.assert_close(
            seen["ema_after"][key].float(), value.float(), rtol=0, atol=1e-5, msg=key
        )
