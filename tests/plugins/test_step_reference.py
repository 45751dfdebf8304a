"""One ER + GradMix iteration replayed by a plain-PyTorch reference.

Naive + ``ReplayPlugin`` with GradMix (Kim et al., arXiv:2505.08528) on split
digits: on the first iteration of the second experience (every pair still
without evidence, so each score is this step's mean), a recorder keeps the
weights, the batch and the partners and ``lam`` the plugin drew. The
reference redoes the step with nothing of the package but the model: the
mixed inputs, per-sample last-layer gradients by autograd, each candidate's
inner product with the mean gradient of the other buffer samples, the
per-class-pair means, the helpful mask, ``CE + weight * mixed loss`` (the
mixed loss divided by the samples random-pair Mixup would mix), the SGD
step by hand.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin

from avalanche_mixplugins import GradMixPlugin
from avalanche_mixplugins.experiments.streams import split_digits
from tests.support.cl import cl_strategy
from tests.support.nets import make_mlp

LR, WEIGHT = 0.1, 0.8


class Recorder(SupervisedPlugin):
    """First iteration of experience 1 (after GradMix in the list)."""

    def __init__(self, gradmix):
        super().__init__()
        self.gradmix = gradmix
        self.seen = {}

    def _first(self, strategy):
        return (
            strategy.experience.current_experience == 1
            and strategy.clock.train_exp_iterations == 0
        )

    def before_forward(self, strategy, **kwargs):
        if self._first(strategy):
            self.seen["model"] = copy.deepcopy(strategy.model.state_dict())
            self.seen["x"], self.seen["y"] = (
                strategy.mb_x.clone(),
                strategy.mb_y.clone(),
            )
            self.seen["scored_before"] = self.gradmix.scored_pairs

    def before_backward(self, strategy, **kwargs):
        if self._first(strategy):
            self.seen["loss"] = strategy.loss.detach().clone()
            self.seen["batch"] = self.gradmix.last_batch

    def after_training_iteration(self, strategy, **kwargs):
        if self._first(strategy):
            self.seen["after"] = copy.deepcopy(strategy.model.state_dict())
            self.seen["current"] = list(strategy.experience.classes_in_this_experience)


def head_grad(model, x, target):
    """Gradient of soft cross-entropy of one sample w.r.t. the head (W, b)."""
    model.zero_grad()
    loss = -(target * torch.log_softmax(model(x.unsqueeze(0))[0], dim=0)).sum()
    loss.backward()
    head = model[-1]
    return torch.cat([head.weight.grad.flatten(), head.bias.grad]).clone()


def test_one_er_gradmix_iteration_equals_a_plain_pytorch_reference():
    bench = split_digits(n_experiences=5, seed=0, normalize=True)
    torch.manual_seed(0)
    model = make_mlp()
    gradmix = GradMixPlugin(weight=WEIGHT, kind_prior=False, seed=2)
    rec = Recorder(gradmix)
    strategy = cl_strategy(
        "naive_replay", model, [gradmix, rec], lr=LR, mem_size=40, train_epochs=1
    )
    for exp in bench.train_stream[:2]:
        strategy.train(exp)
    seen = rec.seen
    assert not seen["scored_before"].any()  # no evidence before this step

    ref = make_mlp()
    ref.load_state_dict(seen["model"])
    x, y = seen["x"], seen["y"]
    n, c = len(y), 10
    batch = seen["batch"]
    partner, lam = batch.partner, batch.lam
    is_buffer = torch.tensor([int(v) not in seen["current"] for v in y])
    assert is_buffer.any() and (~is_buffer).any()
    lam_x = lam.view(-1, 1, 1, 1)
    x_mix = lam_x * x + (1 - lam_x) * x[partner]
    torch.testing.assert_close(batch.x_mix, x_mix, rtol=0, atol=1e-6)

    # per-sample head gradients by autograd, at the weights before the step
    eye = torch.eye(c)
    g_pool = torch.stack([head_grad(ref, x[k], eye[y[k]]) for k in range(n)])
    t_mix = lam.view(-1, 1) * eye[y] + (1 - lam.view(-1, 1)) * eye[y[partner]]
    g_mix = torch.stack([head_grad(ref, x_mix[i], t_mix[i]) for i in range(n)])
    inner = []
    for i in range(n):
        others = [
            k for k in range(n) if is_buffer[k] and k != i and k != int(partner[i])
        ]
        mean = g_pool[others].mean(dim=0) if others else None
        inner.append(float(g_mix[i] @ mean) if others else float("nan"))
    pair_values: dict[tuple[int, int], list[float]] = {}
    for i in range(n):
        if batch.active[i] and inner[i] == inner[i]:
            a, b = sorted((int(y[i]), int(y[partner[i]])))
            pair_values.setdefault((a, b), []).append(inner[i])
    helpful = torch.tensor(
        [
            batch.active[i].item()
            and sum(
                v := pair_values.get(tuple(sorted((int(y[i]), int(y[partner[i]])))), [])
            )
            / max(len(v), 1)
            > 0
            for i in range(n)
        ]
    )
    assert helpful.any() and not helpful.all()

    ref.zero_grad()
    z = ref(x)
    ce = F.cross_entropy(z, y)
    logp = torch.log_softmax(ref(x_mix), dim=1)
    per = -(t_mix * logp).sum(dim=1)
    mixed = (per * helpful.float()).sum() / n  # every sample had a partner
    loss = ce + WEIGHT * mixed
    torch.testing.assert_close(
        seen["loss"].reshape(()), loss.detach(), rtol=0, atol=1e-5
    )
    loss.backward()
    with torch.no_grad():
        for p in ref.parameters():
            p -= LR * p.grad
    for key, value in ref.state_dict().items():
        torch.testing.assert_close(
            seen["after"][key], value, rtol=0, atol=1e-5, msg=key
        )
