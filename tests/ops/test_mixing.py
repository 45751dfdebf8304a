"""The pure mixing and pairing maths (no Avalanche)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avalanche_mixplugins.mixing import (
    apply_mix,
    current_only_mask,
    cutmix_inputs,
    mix_inputs,
    mix_targets,
    mixed_cross_entropy,
    one_hot,
    sample_lambda,
)
from avalanche_mixplugins.pairing import (
    RandomPairs,
    allowed_pairs,
    candidate_count,
    draw_partners,
)


def test_lambda_range_shape_and_seed():
    g = torch.Generator().manual_seed(3)
    lam = sample_lambda(0.4, 10_000, generator=g)
    assert lam.shape == (10_000,)
    assert float(lam.min()) >= 0.0 and float(lam.max()) <= 1.0
    # Beta(0.4, 0.4) is U-shaped: mean 1/2, most mass near the ends.
    assert abs(float(lam.mean()) - 0.5) < 0.02
    assert float(((lam < 0.1) | (lam > 0.9)).float().mean()) > 0.4
    again = sample_lambda(0.4, 10_000, generator=torch.Generator().manual_seed(3))
    assert torch.equal(lam, again)
    shared = sample_lambda(1.0, 5, per_sample=False, generator=g)
    assert torch.all(shared == shared[0])


@pytest.mark.parametrize("alpha", [0, -1.0, float("nan"), float("inf"), "a"])
def test_lambda_rejects_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        sample_lambda(alpha, 4)


def test_mix_inputs_is_the_convex_combination():
    x = torch.randn(6, 1, 4, 4)
    partner = torch.tensor([1, 0, 3, 2, 5, 4])
    lam = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0, 0.3])
    out = mix_inputs(x, partner, lam)
    for i in range(6):
        assert torch.allclose(out[i], lam[i] * x[i] + (1 - lam[i]) * x[partner[i]])


def test_mix_inputs_rejects_integer_images_and_bad_shapes():
    with pytest.raises(ValueError, match="floating-point"):
        mix_inputs(
            torch.zeros(2, 1, 4, 4, dtype=torch.uint8),
            torch.tensor([1, 0]),
            torch.ones(2),
        )
    with pytest.raises(ValueError, match="partner must have shape"):
        mix_inputs(torch.zeros(3, 2), torch.tensor([1, 0]), torch.ones(3))


def test_soft_targets_sum_to_one_and_weight_labels():
    y = torch.tensor([0, 1, 2, 2])
    partner = torch.tensor([1, 2, 0, 3])
    lam = torch.tensor([0.3, 0.6, 1.0, 0.5])
    t = mix_targets(y, partner, lam, 4)
    assert torch.allclose(t.sum(1), torch.ones(4))
    assert torch.allclose(t[0], torch.tensor([0.3, 0.7, 0.0, 0.0]))
    assert torch.allclose(t[3], torch.tensor([0.0, 0.0, 1.0, 0.0]))  # same class
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        one_hot(torch.tensor([0, 4]), 4)


def test_mixed_cross_entropy_equals_soft_target_cross_entropy():
    logits = torch.randn(8, 5)
    y = torch.randint(0, 5, (8,))
    partner = torch.randperm(8)
    lam = torch.rand(8)
    soft = mix_targets(y, partner, lam, 5)
    ref = -(soft * F.log_softmax(logits, 1)).sum(1)
    got = mixed_cross_entropy(logits, y, partner, lam, reduction="none")
    assert torch.allclose(got, ref, atol=1e-6)
    assert torch.allclose(
        mixed_cross_entropy(logits, y, partner, lam), ref.mean(), atol=1e-6
    )


def test_cutmix_lambda_is_one_minus_pasted_area():
    n, h, w = 64, 12, 10
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 2, h, w).clone()
    partner = torch.roll(torch.arange(n), 1)
    lam = sample_lambda(1.0, n, generator=torch.Generator().manual_seed(0))
    mixed, lam_adj = cutmix_inputs(
        x, partner, lam, generator=torch.Generator().manual_seed(1)
    )
    from_partner = (mixed[:, 0] == x[partner, 0]).float().mean(dim=(1, 2))
    assert torch.allclose(lam_adj, 1.0 - from_partner, atol=1e-6)
    assert torch.all((lam_adj >= 0) & (lam_adj <= 1))
    # the box is rectangular and pasted on every channel
    assert torch.equal(mixed[:, 0] == x[partner, 0], mixed[:, 1] == x[partner, 1])
    # the box covers about 1 - lam of the image, less where it is clipped
    assert torch.all(lam_adj >= lam - (1.0 / h + 1.0 / w))
    inside = (lam > 0.2) & (lam < 0.8)
    assert float((lam_adj - lam)[inside].mean()) < 0.2
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        apply_mix("cutmix", torch.zeros(4, 3), partner[:4], lam[:4])
    with pytest.raises(ValueError, match="mix mode"):
        apply_mix("blend", x, partner, lam)


def test_pairing_modes_respect_buffer_labels():
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 3])
    is_buffer = y < 2  # classes 0, 1 are previous-task classes
    for _ in range(50):
        p, active = RandomPairs(pairing="all").select(y, is_buffer, generator=g)
        assert active.all() and torch.all(p != torch.arange(10))
        p, active = RandomPairs(pairing="buffer_current").select(
            y, is_buffer, generator=g
        )
        assert active.all() and torch.all(is_buffer[p] != is_buffer)
        p, active = RandomPairs(pairing="with_buffer").select(y, is_buffer, generator=g)
        assert active.all() and torch.all(p != torch.arange(10))
        assert torch.all(is_buffer[p] | is_buffer)
        p, active = RandomPairs(pairing="current").select(y, is_buffer, generator=g)
        assert torch.equal(active, ~is_buffer)
        assert torch.all(~is_buffer[p[active]]) and torch.all(
            p[active] != torch.arange(10)[active]
        )


def test_allowed_pairs_match_a_loop_over_sample_pairs():
    is_buffer = torch.tensor([True, False, True, False, False])
    rule = {
        "all": lambda bi, bj: True,
        "buffer_current": lambda bi, bj: bi != bj,
        "with_buffer": lambda bi, bj: bi or bj,
        "current": lambda bi, bj: not bi and not bj,
    }
    for pairing, ok in rule.items():
        expected = torch.tensor(
            [
                [
                    i != j and ok(bool(is_buffer[i]), bool(is_buffer[j]))
                    for j in range(5)
                ]
                for i in range(5)
            ]
        )
        assert torch.equal(allowed_pairs(is_buffer, pairing), expected), pairing


def test_candidate_count_is_the_samples_with_an_admissible_partner():
    rule = {
        "all": lambda bi, bj: True,
        "buffer_current": lambda bi, bj: bi != bj,
        "with_buffer": lambda bi, bj: bi or bj,
        "current": lambda bi, bj: not bi and not bj,
    }
    cases = [
        [True, False, True, False, False],
        [True, True, True],  # no current sample
        [False, False, False, False],  # no buffer sample
        [False],  # one sample: no partner at all, counted as 1
    ]
    for flags in cases:
        n = len(flags)
        for pairing, ok in rule.items():
            expected = sum(
                any(i != j and ok(flags[i], flags[j]) for j in range(n))
                for i in range(n)
            )
            got = candidate_count(torch.tensor(flags), pairing)
            assert got.dim() == 0 and got.dtype == torch.float32
            assert float(got) == max(expected, 1), (flags, pairing)


def test_draw_partners_marks_rows_without_candidates_inactive():
    weights = torch.zeros(3, 3)
    weights[0, 2] = 1.0
    partner, active = draw_partners(weights)
    assert partner.tolist() == [2, 1, 2] and active.tolist() == [True, False, False]
    with pytest.raises(ValueError, match="pairing"):
        allowed_pairs(torch.zeros(3, dtype=torch.bool), "pairs")


def test_unchecked_one_hot_skips_validation_only():
    y = torch.tensor([0, 2, 1])
    assert torch.equal(one_hot(y, 3, check=False), one_hot(y, 3))
    partner, lam = torch.tensor([1, 2, 0]), torch.tensor([0.2, 0.5, 1.0])
    assert torch.equal(
        mix_targets(y, partner, lam, 3, check=False), mix_targets(y, partner, lam, 3)
    )


def test_asymmetric_masks_by_hand():
    """Classes 4, 5 current; 0, 2 in the buffer; 6 logits."""
    y = torch.tensor([4, 5, 0, 2])
    is_buffer = torch.tensor([False, False, True, True])
    partner = torch.tensor([2, 0, 3, 1])  # cur-buf, cur-cur, buf-buf, buf-cur
    rows = {
        # "current": only the two-current candidate loses the previous logits
        (False, False): [[0] * 6, [1, 1, 1, 1, 0, 0], [0] * 6, [0] * 6],
        # "both": the two-buffer candidate also loses the current logits
        (True, False): [[0] * 6, [1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1], [0] * 6],
        # "all": a current/buffer candidate keeps the current classes and its
        # buffer source's class only
        (True, True): [
            [0, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [0, 0, 0, 0, 1, 1],
            [1, 1, 0, 1, 0, 0],
        ],
    }
    for (previous_only, cross), expected in rows.items():
        mask = current_only_mask(
            y, is_buffer, partner, 6, previous_only=previous_only, cross=cross
        )
        assert mask.int().tolist() == expected, (previous_only, cross)
    # a partner that contributes nothing (lam = 1) is not a source
    lam = torch.tensor([1.0, 0.5, 0.5, 0.5])
    mask = current_only_mask(
        y, is_buffer, partner, 6, lam, previous_only=True, cross=True
    )
    assert mask[0].int().tolist() == [1, 1, 1, 1, 0, 0]
