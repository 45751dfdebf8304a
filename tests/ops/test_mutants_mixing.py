"""The mixing maths: the cases the generated mutations of
``avalanche_mixplugins/mixing.py`` showed untested (the exact error messages,
dtypes kept or promoted, small ``alpha``, the generator reaching every draw,
CutMix boxes and the asymmetric masks against a loop, the per-sample choice
of the operation, the one-scatter targets), each against a hand-worked value,
a loop or autograd."""

from __future__ import annotations

import math

import pytest
import torch

from avalanche_mixplugins.mixing import (
    apply_mix,
    box_masks,
    current_only_mask,
    cutmix_boxes,
    cutmix_inputs,
    mix_by_operation,
    mix_inputs,
    mix_targets,
    mixed_cross_entropy,
    one_hot,
    one_hot_and_mix_targets,
    sample_lambda,
)


# -- sample_lambda
def test_lambda_is_float32_on_the_cpu_by_default():
    lam = sample_lambda(1.0, 7)
    assert lam.dtype == torch.float32 and lam.device == torch.device("cpu")
    assert lam.shape == (7,)
    lam = sample_lambda(1.0, 3, device="cpu", per_sample=False)
    assert lam.shape == (3,) and lam.dtype == torch.float32


def test_a_small_alpha_is_symmetric_and_has_no_fake_half():
    """Beta(a, a) is symmetric about 1/2 for any ``a``; at ``a = 0.02`` half
    the float32 Gamma draws underflow to 0, so only a float64 draw keeps the
    two ends balanced (and never returns the 0.5 a 0 / 0 would make)."""
    lam = sample_lambda(0.02, 20_000, generator=torch.Generator().manual_seed(0))
    assert abs(float(lam.mean()) - 0.5) < 0.02  # std of the mean ~ 0.0035
    assert abs(float((lam < 0.5).float().mean()) - 0.5) < 0.02
    assert not bool((lam == 0.5).any())
    assert float(lam.min()) >= 0.0 and float(lam.max()) <= 1.0


def test_lambda_moments_match_the_beta_distribution():
    """Mean 1/2 and variance ``1 / (4 (2 a + 1))`` of ``Beta(a, a)``."""
    for alpha in (0.3, 2.0):
        lam = sample_lambda(
            alpha, 40_000, generator=torch.Generator().manual_seed(1)
        ).double()
        var = 1.0 / (4.0 * (2.0 * alpha + 1.0))
        assert abs(float(lam.mean()) - 0.5) < 0.01
        assert abs(float(lam.var()) - var) < 0.1 * var


def test_the_generator_alone_decides_lambda():
    def draw(per_sample):
        torch.manual_seed(123 if per_sample else 7)
        return sample_lambda(
            0.7,
            6,
            generator=torch.Generator().manual_seed(5),
            per_sample=per_sample,
        )

    a, b = draw(True), draw(True)
    torch.manual_seed(999)
    c = sample_lambda(0.7, 6, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and torch.equal(a, c)
    assert len(set(a.tolist())) == 6
    shared = draw(False)
    torch.manual_seed(42)
    again = sample_lambda(
        0.7, 6, generator=torch.Generator().manual_seed(5), per_sample=False
    )
    assert torch.equal(shared, again) and len(set(shared.tolist())) == 1
    assert 0.0 < float(shared[0]) < 1.0


# -- mix_inputs
def test_mixup_keeps_float64_and_works_on_flat_features():
    x = torch.tensor([[1.0, 2.0], [3.0, 5.0], [-1.0, 0.5]], dtype=torch.float64)
    partner = torch.tensor([2, 0, 1])
    lam = torch.tensor([0.25, 0.5, 1.0])
    out = mix_inputs(x, partner, lam)
    assert out.dtype == torch.float64
    expected = [[0.25 * 1 + 0.75 * -1, 0.25 * 2 + 0.75 * 0.5], [2.0, 3.5], [-1.0, 0.5]]
    assert torch.allclose(out, torch.tensor(expected, dtype=torch.float64))


def test_mixup_of_a_3d_batch_weights_each_sample():
    x = torch.arange(12.0).view(2, 3, 2)
    out = mix_inputs(x, torch.tensor([1, 0]), torch.tensor([0.0, 0.75]))
    assert torch.equal(out[0], x[1])
    assert torch.allclose(out[1], 0.75 * x[1] + 0.25 * x[0])


def test_mixup_integer_error_names_dtype_and_the_conversion():
    with pytest.raises(
        ValueError,
        match=r"^mixup needs floating-point inputs, got torch\.int64; convert "
        r"images with torchvision\.transforms\.v2\.ToDtype\(torch\.float32, "
        r"scale=True\) first$",
    ):
        mix_inputs(
            torch.zeros(2, 3, dtype=torch.long), torch.tensor([1, 0]), torch.ones(2)
        )


# -- CutMix boxes
def _boxes_by_hand(lam, height, width, cy, cx):
    """Side ``round(sqrt(1 - lam) * side)``, the box starting ``side // 2``
    before the centre, clipped to the image (plain Python)."""
    out, lam_adj = [], []
    for i, lm in enumerate(lam):
        c = math.sqrt(min(max(1.0 - lm, 0.0), 1.0))
        ch, cw = round(c * height), round(c * width)
        y0, x0 = cy[i] - ch // 2, cx[i] - cw // 2
        y1, x1 = min(max(y0 + ch, 0), height), min(max(x0 + cw, 0), width)
        y0, x0 = min(max(y0, 0), height), min(max(x0, 0), width)
        out.append([y0, y1, x0, x1])
        lam_adj.append(1.0 - (y1 - y0) * (x1 - x0) / (height * width))
    return out, lam_adj


def test_cutmix_boxes_against_a_loop_with_centres_from_the_generator():
    """The centres are ``randint(0, H)`` then ``randint(0, W)`` of the
    generator; the rest is the CutMix box worked out in Python."""
    height, width, n = 9, 7, 40
    lam = torch.linspace(0.0, 1.0, n)
    g = torch.Generator().manual_seed(11)
    cy = torch.randint(0, height, (n,), generator=g).tolist()
    cx = torch.randint(0, width, (n,), generator=g).tolist()
    torch.manual_seed(3)  # the global state plays no part
    boxes, lam_adj = cutmix_boxes(
        lam, height, width, generator=torch.Generator().manual_seed(11)
    )
    exp_boxes, exp_lam = _boxes_by_hand(lam.tolist(), height, width, cy, cx)
    assert boxes.dtype == torch.long and boxes.shape == (n, 4)
    assert boxes.tolist() == exp_boxes
    assert lam_adj.dtype == torch.float32
    assert torch.allclose(lam_adj, torch.tensor(exp_lam), atol=1e-6)


def test_cutmix_centres_cover_every_pixel():
    """A one-pixel box sits at its centre: over many draws every row and
    column of the image is a centre, with about equal frequency."""
    height, width, n = 5, 4, 4000
    lam = torch.full((n,), 1.0 - 1.0 / (height * width))  # sides round to 1
    boxes, lam_adj = cutmix_boxes(
        lam, height, width, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(boxes[:, 1] - boxes[:, 0], torch.ones(n, dtype=torch.long))
    assert torch.equal(boxes[:, 3] - boxes[:, 2], torch.ones(n, dtype=torch.long))
    rows = torch.bincount(boxes[:, 0], minlength=height + 1)
    cols = torch.bincount(boxes[:, 2], minlength=width + 1)
    assert rows[height] == 0 and cols[width] == 0
    assert torch.all((rows[:height] - n / height).abs() < 0.2 * n / height)
    assert torch.all((cols[:width] - n / width).abs() < 0.2 * n / width)
    assert torch.allclose(lam_adj, torch.full((n,), 1.0 - 1.0 / 20))


def test_cutmix_extreme_lambdas_and_float64():
    lam = torch.tensor([1.0, 0.0], dtype=torch.float64)
    boxes, lam_adj = cutmix_boxes(lam, 6, 6, generator=torch.Generator().manual_seed(2))
    assert lam_adj.dtype == torch.float64
    y0, y1, x0, x1 = boxes[0].tolist()
    assert (y1 - y0) * (x1 - x0) == 0 and float(lam_adj[0]) == 1.0
    # lam = 0: a full-size box centred in the image, clipped where it overflows
    y0, y1, x0, x1 = boxes[1].tolist()
    assert 0 <= y0 < y1 <= 6 and 0 <= x0 < x1 <= 6
    assert math.isclose(float(lam_adj[1]), 1.0 - (y1 - y0) * (x1 - x0) / 36)


def test_box_masks_by_hand():
    boxes = torch.tensor([[1, 3, 0, 2], [0, 0, 1, 3], [2, 4, 3, 4]])
    masks = box_masks(boxes, 4, 4)
    assert masks.shape == (3, 1, 4, 4) and masks.dtype == torch.bool
    for k, (y0, y1, x0, x1) in enumerate(boxes.tolist()):
        expected = [[y0 <= r < y1 and x0 <= c < x1 for c in range(4)] for r in range(4)]
        assert masks[k, 0].tolist() == expected


def test_cutmix_inputs_pastes_the_box_of_the_partner():
    x = torch.arange(3 * 2 * 5 * 6, dtype=torch.float32).view(3, 2, 5, 6)
    partner = torch.tensor([2, 0, 1])
    lam = torch.tensor([0.3, 0.6, 0.9])
    out, lam_adj = cutmix_inputs(
        x, partner, lam, generator=torch.Generator().manual_seed(4)
    )
    boxes, lam_ref = cutmix_boxes(lam, 5, 6, generator=torch.Generator().manual_seed(4))
    for i, (y0, y1, x0, x1) in enumerate(boxes.tolist()):
        ref = x[i].clone()
        ref[:, y0:y1, x0:x1] = x[partner[i], :, y0:y1, x0:x1]
        assert torch.equal(out[i], ref)
    assert torch.equal(lam_adj, lam_ref)
    with pytest.raises(
        ValueError,
        match=r"^CutMix needs image batches of shape \(N, C, H, W\), got \(3, 5, 6\)$",
    ):
        cutmix_inputs(x[:, 0], partner, lam)


# -- one-hot and soft targets
def test_one_hot_dtype_empty_labels_and_the_error_text():
    y = torch.tensor([2, 0])
    t = one_hot(y, 3)
    assert t.dtype == torch.float32 and t.tolist() == [[0, 0, 1], [1, 0, 0]]
    assert one_hot(y, 3, dtype=torch.float64).dtype == torch.float64
    empty = one_hot(torch.zeros(0, dtype=torch.long), 3)
    assert empty.shape == (0, 3)
    assert one_hot(torch.tensor([0, 2], dtype=torch.int32), 3).tolist() == [
        [1, 0, 0],
        [0, 0, 1],
    ]
    with pytest.raises(
        ValueError,
        match=r"^labels must lie in \[0, 3\) to match the model's 3 outputs, "
        r"got range \[-1, 2\]$",
    ):
        one_hot(torch.tensor([2, -1]), 3)
    with pytest.raises(ValueError, match=r"got range \[0, 3\]$"):
        one_hot(torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match=r"got range \[0, 3\]$"):
        mix_targets(torch.tensor([0, 3]), torch.tensor([1, 0]), torch.ones(2), 3)


def test_mix_targets_with_a_float64_lam_are_float32():
    y, partner = torch.tensor([0, 2]), torch.tensor([1, 0])
    lam = torch.tensor([0.25, 0.5], dtype=torch.float64)
    t = mix_targets(y, partner, lam, 3)
    assert t.dtype == torch.float32
    assert t.tolist() == [[0.25, 0.0, 0.75], [0.5, 0.0, 0.5]]


def test_one_scatter_targets_equal_a_loop():
    y = torch.tensor([3, 0, 1, 3, 2], dtype=torch.int32)
    partner = torch.tensor([1, 2, 0, 4, 3])
    lam = torch.tensor([0.1, 0.5, 1.0, 0.0, 0.7], dtype=torch.float64)
    t, t_mix = one_hot_and_mix_targets(y, partner, lam, 5)
    assert t.dtype == torch.float32 and t_mix.dtype == torch.float32
    assert t.shape == (5, 5) and t_mix.shape == (5, 5)
    for i in range(5):
        own = [float(c == int(y[i])) for c in range(5)]
        mixed = [
            float(lam[i]) * (c == int(y[i]))
            + (1 - float(lam[i])) * (c == int(y[partner[i]]))
            for c in range(5)
        ]
        assert t[i].tolist() == own
        assert torch.allclose(t_mix[i], torch.tensor(mixed))


# -- mixed cross-entropy
def test_mixed_cross_entropy_reductions_and_autograd():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 1, 1, 2])
    partner = torch.tensor([4, 2, 0, 3, 1])
    lam = torch.tensor([0.0, 0.2, 1.0, 0.5, 0.9])
    per = []
    for i in range(5):
        z = logits[i].tolist()
        lse = math.log(sum(math.exp(v) for v in z))
        a, b = lse - z[int(y[i])], lse - z[int(y[partner[i]])]
        per.append(float(lam[i]) * a + (1 - float(lam[i])) * b)
    none = mixed_cross_entropy(logits, y, partner, lam, reduction="none")
    assert none.dtype == torch.float32 and none.shape == (5,)
    assert torch.allclose(none, torch.tensor(per, dtype=torch.float32), atol=1e-5)
    total = mixed_cross_entropy(logits, y, partner, lam, reduction="sum")
    assert math.isclose(float(total), sum(per), rel_tol=1e-5)
    mean = mixed_cross_entropy(logits, y, partner, lam)
    assert math.isclose(float(mean), sum(per) / 5, rel_tol=1e-5)
    # gradient: softmax minus the soft target, averaged over the rows
    mean.backward()
    p = torch.softmax(logits.detach(), dim=1)
    t = mix_targets(y, partner, lam, 4).double()
    assert torch.allclose(logits.grad, (p - t) / 5, atol=1e-6)
    with pytest.raises(
        ValueError, match=r"^reduction must be 'mean', 'sum' or 'none', got 'avg'$"
    ):
        mixed_cross_entropy(logits, y, partner, lam, reduction="avg")


def test_a_term_of_weight_zero_ignores_a_masked_logit():
    """Row 0: its partner's label is masked (-inf) and weighs 0; row 1: its
    own label is masked and weighs 0; row 2: both count."""
    inf = float("inf")
    logits = torch.tensor([[0.0, -inf, 1.0], [-inf, 2.0, 0.0], [1.0, 1.0, 1.0]])
    y = torch.tensor([0, 0, 1])
    partner = torch.tensor([2, 2, 0])
    lam = torch.tensor([1.0, 0.0, 0.5])
    got = mixed_cross_entropy(logits, y, partner, lam, reduction="none")
    lse0 = math.log(1.0 + math.e)
    lse1 = math.log(math.exp(2.0) + 1.0)
    expected = torch.tensor([lse0 - 0.0, lse1 - 2.0, math.log(3.0)])
    assert torch.allclose(got, expected)


# -- asymmetric masks against a loop
def _mask_by_hand(y, is_buffer, partner, c, lam, previous_only, cross):
    present = {int(y[k]) for k in range(len(y)) if not is_buffer[k]}
    rows = []
    for i in range(len(y)):
        j = int(partner[i])
        mixed_in = lam is None or float(lam[i]) < 1.0
        a_buf = bool(is_buffer[i])
        b_buf = bool(is_buffer[j]) if mixed_in else None  # None: no source
        row = []
        for k in range(c):
            out = False
            if not a_buf and b_buf is not True:  # two current sources (or one)
                out = k not in present
            if previous_only and a_buf and b_buf is not False:  # buffer only
                out = out or k in present
            if cross and b_buf is not None and a_buf != b_buf:
                own = int(y[i]) if a_buf else int(y[j])
                out = out or (k not in present and k != own)
            row.append(out)
        rows.append(row)
    return rows


def test_asymmetric_masks_against_a_loop():
    g = torch.Generator().manual_seed(0)
    for trial in range(40):
        n, c = 7, 6
        y = torch.randint(0, c, (n,), generator=g)
        is_buffer = torch.rand(n, generator=g) < 0.5
        partner = torch.randint(0, n, (n,), generator=g)
        lam = torch.where(
            torch.rand(n, generator=g) < 0.3, 1.0, torch.rand(n, generator=g)
        )
        for lam_arg in (None, lam):
            for previous_only in (False, True):
                for cross in (False, True):
                    got = current_only_mask(
                        y,
                        is_buffer,
                        partner,
                        c,
                        lam_arg,
                        previous_only=previous_only,
                        cross=cross,
                    )
                    assert got.dtype == torch.bool and got.shape == (n, c)
                    expected = _mask_by_hand(
                        y, is_buffer, partner, c, lam_arg, previous_only, cross
                    )
                    assert got.tolist() == expected, (trial, previous_only, cross)


def test_the_default_mask_is_the_current_rule():
    y = torch.tensor([1, 0, 2])
    is_buffer = torch.tensor([False, True, True])
    partner = torch.tensor([0, 2, 0])
    assert current_only_mask(y, is_buffer, partner, 3).tolist() == [
        [True, False, True],
        [False, False, False],
        [False, False, False],
    ]


# -- the operation chosen per call or per sample
def test_apply_mix_dispatches_and_passes_the_generator():
    x = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    partner = torch.tensor([1, 2, 3, 0])
    lam = torch.tensor([0.2, 0.4, 0.6, 0.8])
    out, lam_y = apply_mix("mixup", x, partner, lam)
    assert torch.allclose(out, mix_inputs(x, partner, lam)) and lam_y is lam
    torch.manual_seed(1)
    out, lam_y = apply_mix(
        "cutmix", x, partner, lam, generator=torch.Generator().manual_seed(9)
    )
    torch.manual_seed(2)
    ref, ref_lam = cutmix_inputs(
        x, partner, lam, generator=torch.Generator().manual_seed(9)
    )
    assert torch.equal(out, ref) and torch.equal(lam_y, ref_lam)
    with pytest.raises(ValueError, match="mix mode"):
        apply_mix("MIXUP", x, partner, lam)


def test_mix_by_operation_picks_each_sample_s_operation():
    x = torch.rand(6, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    partner = torch.tensor([3, 4, 5, 0, 1, 2])
    lam = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9, 0.4], dtype=torch.float64)
    operation = torch.tensor([0, 1, 1, 0, 1, 0])
    torch.manual_seed(5)
    out, lam_y = mix_by_operation(
        x, partner, lam, operation, generator=torch.Generator().manual_seed(8)
    )
    torch.manual_seed(6)
    pasted, lam_cut = cutmix_inputs(
        x, partner, lam, generator=torch.Generator().manual_seed(8)
    )
    blended = mix_inputs(x, partner, lam)
    assert out.shape == x.shape and lam_y.dtype == torch.float64
    for i in range(6):
        if operation[i] == 1:
            assert torch.equal(out[i], pasted[i]) and lam_y[i] == lam_cut[i]
        else:
            assert torch.equal(out[i], blended[i]) and lam_y[i] == lam[i]
    with pytest.raises(
        ValueError,
        match=r"^operation must have the partner's shape \(6,\), got \(5,\)$",
    ):
        mix_by_operation(x, partner, lam, operation[:5])
    with pytest.raises(
        ValueError,
        match=r"^choosing the operation per sample includes CutMix, which needs "
        r"image batches of shape \(N, C, H, W\), got \(6, 50\); use mix='mixup'$",
    ):
        mix_by_operation(x.view(6, 50), partner, lam, operation)
