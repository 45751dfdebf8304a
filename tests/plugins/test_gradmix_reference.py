"""GradMix's ``reference`` option inside real Avalanche runs.

With ``reference="buffer+current"`` (``"buffer|current"``, ``"balanced"``) every
candidate's score is checked against brute force on the same step: autograd
gradients of its own (masked, under ER-ACE) mixed loss and of the mean
full-softmax loss of the step's buffer samples and of its current-class
samples, each without the candidate's sources, combined by hand. Under
ER-ACE in the closed form of the head, under Naive + ``ReplayPlugin`` in
the space of all parameters (``grad_space="full"``).
"""

from __future__ import annotations

import pytest
import torch
from avalanche.core import SupervisedPlugin

from avalanche_mixplugins import GradMixPlugin
from tests.support.autograd_reference import leave_one_out_scores as _scores
from tests.support.autograd_reference import set_norms as _norms
from tests.support.cl import cl_strategy
from tests.support.nets import PlainConvNet


class Recorder(SupervisedPlugin):
    """Head inputs of every forward of the step; runs ``check`` after GradMix."""

    def __init__(self, head, check):
        super().__init__()
        self.inputs: list[torch.Tensor] = []
        self.check, self.steps = check, 0
        head.register_forward_hook(
            lambda m, args, out: self.inputs.append(args[0].detach().clone())
        )

    def before_training_iteration(self, strategy, **kwargs):
        self.inputs.clear()

    def before_backward(self, strategy, **kwargs):
        if strategy.experience.current_experience >= 1 and self.steps < 3:
            self.check(strategy, self.inputs)
            self.steps += 1


def _combine(pair, reference, norms):
    b, c = pair[:, 0], pair[:, 1]
    if reference == "balanced":
        b, c = b / norms[0], c / norms[1]
    both = torch.maximum(b, c) if reference == "buffer|current" else b + c
    return torch.where(torch.isnan(c), b, both)


@pytest.mark.parametrize("reference", ["buffer+current", "buffer|current", "balanced"])
@pytest.mark.parametrize("setup", ["er_ace", "naive_replay"])
def test_scores_credit_the_current_classes(setup, reference, digits_benchmark):
    grad_space = "last" if setup == "er_ace" else "full"
    gradmix = GradMixPlugin(seed=1, reference=reference, grad_space=grad_space)
    torch.manual_seed(0)
    model = PlainConvNet(num_classes=10)
    flips = []

    def check(strategy, inputs):
        batch = gradmix.last_batch
        current = {int(c) for c in strategy.experience.classes_in_this_experience}
        is_buffer = torch.tensor([int(c) not in current for c in batch.y])
        assert is_buffer.any() and (~is_buffer).any()
        c = batch.logits.shape[1]
        lam = batch.lam.view(-1, 1)
        eye = torch.eye(c)
        t_mix = lam * eye[batch.y] + (1 - lam) * eye[batch.y[batch.partner]]
        if grad_space == "last":
            # ER-ACE: the minibatch, the buffer batch, then the mixed batch
            pool, mixed = torch.cat(inputs[:-1]), inputs[-1]
            forward, params = model.fc, list(model.fc.parameters())
            mask = batch.logit_mask
            assert mask is not None and mask.any()
        else:
            pool, mixed = batch.x, batch.x_mix.detach()
            forward, params = model, list(model.parameters())
            mask = None
        pair = _scores(
            forward, params, pool, batch.y, is_buffer, mixed, t_mix,
            batch.partner, mask, c,
        )  # fmt: skip
        norms = _norms(forward, params, pool, batch.y, is_buffer, c)
        ref = _combine(pair, reference, norms)
        got = gradmix.last_inner
        assert torch.equal(torch.isnan(got), torch.isnan(ref))
        ok = ~torch.isnan(ref)
        scale = float(ref[ok].abs().max())
        assert torch.allclose(got[ok], ref[ok], rtol=1e-4, atol=1e-5 * scale)
        # candidates whose verdict the current classes change
        flips.append(int(((pair[:, 0] > 0) != (ref > 0))[ok].sum()))

    recorder = Recorder(model.fc, check)
    strategy = cl_strategy(
        setup, model, [gradmix, recorder], batch_size_mem=32, train_epochs=1
    )
    for exp in digits_benchmark.train_stream[:2]:
        strategy.train(exp)
    assert recorder.steps == 3
    assert sum(flips) > 0, "the current classes never changed a verdict"
