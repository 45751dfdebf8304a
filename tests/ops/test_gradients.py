"""GradMix maths: closed form against autograd, the pair criterion, the claim."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from avalanche_mixplugins.gradients import (
    HeadCapture,
    find_linear_head,
    full_gradient_sum,
    full_inner_products,
    last_layer_gradient_sum,
    last_layer_inner_products,
    soft_cross_entropy,
)
from avalanche_mixplugins.mixing import mix_inputs, mix_targets, one_hot, sample_lambda
from avalanche_mixplugins.pairing import GradientPairs
from tests.support.nets import PlainConvNet, make_mlp


def _models(bias):
    mlp = make_mlp(num_classes=5, in_features=3 * 8 * 8, bias=bias)
    cnn = PlainConvNet(num_classes=5, in_chans=3, bias=bias)
    vit = timm.create_model(
        "vit_tiny_patch16_224", img_size=16, patch_size=4, num_classes=5, depth=2
    )
    if not bias:
        vit.head = nn.Linear(vit.head.in_features, 5, bias=False)
    return {"mlp": mlp, "cnn": cnn, "timm_vit": vit}


def _autograd_inner(model, params, x_buf, y_buf, x_mix, t_mix):
    loss_buf = F.cross_entropy(model(x_buf), y_buf)
    g_buf = torch.autograd.grad(loss_buf, params)
    out = []
    for i in range(x_mix.shape[0]):
        li = soft_cross_entropy(model(x_mix[i : i + 1]), t_mix[i : i + 1]).sum()
        gi = torch.autograd.grad(li, params)
        out.append(sum((a * b).sum() for a, b in zip(gi, g_buf)))
    return torch.stack(out)


def _head_inputs_and_outputs(model, head, *batches):
    """``(features, logits)`` of the head for each batch, through ``HeadCapture``."""
    cap = HeadCapture(model, head)
    with torch.no_grad():
        for x in batches:
            model(x)
    found = [cap.lookup(x) for x in batches]
    cap.remove()
    return found


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name", ["mlp", "cnn", "timm_vit"])
def test_last_layer_closed_form_equals_autograd(name, bias):
    torch.manual_seed(0)
    model = _models(bias)[name].double().eval()
    _, head = find_linear_head(model)
    assert (head.bias is not None) == bias
    x_buf = torch.rand(12, 3, 16, 16, dtype=torch.float64)
    y_buf = torch.randint(0, 5, (12,))
    x = torch.rand(10, 3, 16, 16, dtype=torch.float64)
    y = torch.randint(0, 5, (10,))
    if name == "mlp":
        x_buf, x = x_buf[..., :8, :8], x[..., :8, :8]
    partner = torch.randperm(10)
    lam = sample_lambda(0.4, 10).double()
    x_mix = mix_inputs(x, partner, lam)
    t_mix = mix_targets(y, partner, lam, 5).double()

    (h_buf, z_buf), (h_mix, z_mix) = _head_inputs_and_outputs(model, head, x_buf, x_mix)
    g_w, g_b, n = last_layer_gradient_sum(h_buf, z_buf, one_hot(y_buf, 5).double())
    closed = last_layer_inner_products(
        h_mix, z_mix, t_mix, g_w / n, (g_b / n) if bias else None
    )
    params = [p for p in head.parameters()]
    ref = _autograd_inner(model, params, x_buf, y_buf, x_mix, t_mix)
    assert torch.allclose(closed, ref, rtol=1e-5, atol=1e-10 * float(ref.abs().max()))


def test_full_mode_equals_autograd():
    torch.manual_seed(0)
    model = PlainConvNet(num_classes=5, in_chans=3).double().eval()
    x_buf = torch.rand(8, 3, 8, 8, dtype=torch.float64)
    y_buf = torch.randint(0, 5, (8,))
    x = torch.rand(6, 3, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 5, (6,))
    partner = torch.randperm(6)
    lam = sample_lambda(1.0, 6).double()
    x_mix = mix_inputs(x, partner, lam)
    t_mix = mix_targets(y, partner, lam, 5).double()
    g, n = full_gradient_sum(model, x_buf, one_hot(y_buf, 5).double())
    got = full_inner_products(model, x_mix, t_mix, g / n)
    ref = _autograd_inner(model, list(model.parameters()), x_buf, y_buf, x_mix, t_mix)
    assert torch.allclose(got, ref, rtol=1e-5)


def test_model_without_linear_head_names_full_mode():
    conv_only = nn.Sequential(nn.Conv2d(1, 3, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match='grad_space="full"'):
        find_linear_head(conv_only)
    resnet = timm.create_model("resnet10t", num_classes=3)
    assert find_linear_head(resnet)[1] is resnet.get_classifier()


def test_conflicting_pair_is_scored_negative_and_never_mixed():
    # Head z = W h + b with W = 0, b = 0: p is uniform over 3 classes. The buffer
    # holds class 0 at h = e1. A mix of classes 1 and 2 at h = e1 has residual r
    # with r . (p - e0) = -1/3 for every lam: its gradient opposes the buffer's
    # (inner product -2/3 counting weight and bias). A class-0 pair scores +2/3.
    head = nn.Linear(4, 3)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    e1 = torch.zeros(4)
    e1[0] = 1.0
    h_buf = e1.repeat(5, 1)
    g_w, g_b, n = last_layer_gradient_sum(
        h_buf, head(h_buf), one_hot(torch.zeros(5).long(), 3)
    )
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    is_buffer = y == 0
    policy = GradientPairs(momentum=0.5, refresh=0.0)
    policy.grow(3)
    gen = torch.Generator().manual_seed(0)
    h = e1.repeat(6, 1)
    for _ in range(20):
        partner, active = policy.select(y, is_buffer, generator=gen)
        pairs = {(int(a), int(b)) for a, b in zip(y, y[partner])}
        if policy.seen[1, 2]:
            assert (1, 2) not in pairs and (2, 1) not in pairs
        lam = sample_lambda(1.0, 6, generator=gen)
        t = mix_targets(y, partner, lam, 3)
        inner = last_layer_inner_products(h, head(h).detach(), t, g_w / n, g_b / n)
        conflict = ((y == 1) & (y[partner] == 2)) | ((y == 2) & (y[partner] == 1))
        assert torch.allclose(inner[conflict], torch.full_like(inner[conflict], -2 / 3))
        sums, counts = policy.batch_pair_sums(y, partner, inner, active)
        policy.update(sums, counts)
        helpful = policy.helpful(y, partner)
        assert not helpful[conflict].any()
    assert policy.seen[1, 2] and policy.scores[1, 2] < 0 and policy.scores[2, 1] < 0
    assert policy.scores[0, 0] > 0
    assert all((a, b) != (1, 2) for a, b, _ in policy.helpful_pairs())


def test_helpful_steps_lower_the_buffer_loss_detrimental_raise_it(digits_tensors):
    """The paper's central claim, first order, on real digits and a trained MLP."""
    x_tr, y_tr, _, _ = digits_tensors
    old = y_tr < 5
    torch.manual_seed(0)
    model = make_mlp(num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    xo, yo = x_tr[old], y_tr[old]
    for _ in range(60):  # learn the previous task
        idx = torch.randint(0, xo.shape[0], (64,))
        opt.zero_grad()
        F.cross_entropy(model(xo[idx]), yo[idx]).backward()
        opt.step()
    x_buf, y_buf = xo[:100], yo[:100]
    x_cur, y_cur = x_tr[~old], y_tr[~old]
    _, head = find_linear_head(model)

    def buffer_loss(m):
        with torch.no_grad():
            return float(F.cross_entropy(m(x_buf), y_buf))

    gen = torch.Generator().manual_seed(1)
    deltas = {"helpful": [], "detrimental": []}
    for _ in range(30):
        idx_c = torch.randint(0, x_cur.shape[0], (48,), generator=gen)
        idx_b = torch.randint(0, x_buf.shape[0], (16,), generator=gen)
        x = torch.cat([x_cur[idx_c], x_buf[idx_b]])
        y = torch.cat([y_cur[idx_c], y_buf[idx_b]])
        partner = torch.randperm(64, generator=gen)
        lam = sample_lambda(1.0, 64, generator=gen)
        x_mix = mix_inputs(x, partner, lam)
        (h_b, z_b), (h_m, z_m) = _head_inputs_and_outputs(model, head, x_buf, x_mix)
        g_w, g_b, n = last_layer_gradient_sum(h_b, z_b, one_hot(y_buf, 10))
        inner = last_layer_inner_products(
            h_m, z_m, mix_targets(y, partner, lam, 10), g_w / n, g_b / n
        )
        policy = GradientPairs(momentum=0.0)
        policy.grow(10)
        policy.update(
            *policy.batch_pair_sums(y, partner, inner, torch.ones(64, dtype=torch.bool))
        )
        helpful = policy.helpful(y, partner)
        for name, mask in (("helpful", helpful), ("detrimental", ~helpful)):
            if int(mask.sum()) < 4:
                continue
            m = copy.deepcopy(model)
            step = torch.optim.SGD(m.parameters(), lr=0.05)
            before = buffer_loss(m)
            loss = soft_cross_entropy(
                m(x_mix[mask]), mix_targets(y, partner, lam, 10)[mask]
            ).mean()
            loss.backward()
            step.step()
            deltas[name].append(buffer_loss(m) - before)
    mean_h = sum(deltas["helpful"]) / len(deltas["helpful"])
    mean_d = sum(deltas["detrimental"]) / len(deltas["detrimental"])
    assert len(deltas["helpful"]) >= 20 and len(deltas["detrimental"]) >= 20
    print(f"buffer-loss change: helpful {mean_h:+.4f}, detrimental {mean_d:+.4f}")
    # measured: helpful -0.025, detrimental +0.146 (30 draws, lr 0.05)
    assert mean_h < -0.01 and mean_d > 0.05, (mean_h, mean_d)


def test_a_pair_needs_min_evidence_steps_before_it_counts_as_helpful():
    policy = GradientPairs(momentum=0.0, min_evidence=3)
    policy.grow(2)
    y = torch.tensor([0, 1])
    partner = torch.tensor([1, 0])
    sums = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    counts = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    verdicts = []
    for _ in range(4):
        policy.update(sums, counts)
        verdicts.append(bool(policy.helpful(y, partner).all()))
    # positive from the first step, trusted from the third
    assert verdicts == [False, False, True, True]
    # a step without evidence for the pair does not count
    fresh = GradientPairs(momentum=0.0, min_evidence=2)
    fresh.grow(2)
    fresh.update(sums, counts)
    fresh.update(torch.zeros(2, 2), torch.zeros(2, 2))
    assert not fresh.helpful(y, partner).any()
    # the counts survive a state round trip; old states count one step per seen pair
    clone = GradientPairs(min_evidence=3)
    clone.load_state_dict(policy.state_dict())
    assert clone.helpful(y, partner).all()
    old_state = {k: v for k, v in fresh.state_dict().items() if k != "steps"}
    clone.load_state_dict(old_state)
    assert clone.steps[0, 1] == 1
    default = GradientPairs(momentum=0.0)
    default.grow(2)
    default.update(sums, counts)
    assert default.helpful(y, partner).all()
    with pytest.raises(ValueError, match="min_evidence"):
        GradientPairs(min_evidence=0)


def _pair_evidence(c: int, pairs: dict[tuple[int, int], float]):
    """Per-pair sums and counts (one candidate per pair, symmetric) by hand."""
    sums, counts = torch.zeros(c, c), torch.zeros(c, c)
    for (a, b), v in pairs.items():
        for i, j in {(a, b), (b, a)}:
            sums[i, j] += v
            counts[i, j] += 1
    return sums, counts


def test_kind_prior_starts_new_pairs_from_their_kind():
    """Hand-worked: classes 0-1 old and 2-3 current, then 4-5 arrive."""

    def policy(kind_prior):
        p = GradientPairs(momentum=0.5, refresh=0.0, kind_prior=kind_prior)
        p.grow(6)
        p.current = torch.tensor([False, False, True, True, False, False])
        # new-new -1, old-new -2 and -4 (kind mean -3), old-old +3
        p.update(*_pair_evidence(6, {(2, 3): -1.0, (0, 2): -2.0, (1, 3): -4.0}))
        p.update(*_pair_evidence(6, {(0, 1): 3.0}))
        p.start_experience()
        p.current = torch.tensor([False, False, False, False, True, True])
        return p

    y = torch.tensor([4, 5, 2, 3])
    partner = torch.tensor([1, 0, 3, 2])  # pairs (4, 5) and (2, 3)
    with_prior, without = policy(True), policy(False)
    assert torch.allclose(with_prior.kind_scores, torch.tensor([3.0, -3.0, -1.0]))
    # (4, 5) has no evidence: its kind (two current classes) scored -1
    blocked = with_prior.known_detrimental(y)
    assert blocked[0, 1] and not without.known_detrimental(y)[0, 1]
    # (2, 3) was new-new (-1) and is now old-old: it reads that kind's +3
    assert with_prior.helpful(y, partner).tolist() == [False, False, True, True]
    assert without.helpful(y, partner).tolist() == [False, False, False, False]
    # first evidence of (4, 5), +2: smoothed from the prior, 0.5 * -1 + 0.5 * 2
    for p in (with_prior, without):
        p.update(*_pair_evidence(6, {(4, 5): 2.0}))
    assert with_prior.scores[4, 5] == pytest.approx(0.5)
    assert without.scores[4, 5] == pytest.approx(2.0)  # first evidence replaces
    assert with_prior.kind_scores[2] == pytest.approx(0.5)
    # once a pair has its own evidence this experience, the prior is not used
    assert with_prior.helpful(y, partner).tolist() == [True, True, True, True]
    with_prior.update(*_pair_evidence(6, {(2, 3): -10.0}))
    # (2, 3) smoothed from its kind's +3, not from its stale -1
    assert with_prior.scores[2, 3] == pytest.approx(0.5 * 3.0 + 0.5 * -10.0)
    assert with_prior.helpful(y, partner).tolist() == [True, True, False, False]
    state = with_prior.state_dict()
    again = GradientPairs(kind_prior=True)
    again.load_state_dict(state)
    assert torch.equal(again.kind_scores, with_prior.kind_scores)
    assert torch.equal(again.fresh, with_prior.fresh)


def test_full_space_refuses_a_gradient_matrix_over_the_memory_bound():
    """2 samples x 650 parameters x 4 bytes = 5,200 bytes: over a 5,000-byte
    bound the call refuses and names the memory; under it, it runs."""
    from avalanche_mixplugins.gradients import per_sample_gradients

    model = torch.nn.Linear(64, 10)
    x, t = torch.randn(2, 64), torch.softmax(torch.randn(2, 10), dim=1)
    with pytest.raises(ValueError, match=r"needs 0\.00 GiB .* 2 samples x 650"):
        per_sample_gradients(model, x, t, max_bytes=5_000)
    assert per_sample_gradients(model, x, t, max_bytes=5_200).shape == (2, 650)
