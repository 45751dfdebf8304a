"""GradMix's reference gradient that also counts the current classes.

``reference="buffer+current"`` scores a candidate against the buffer
samples' mean gradient plus the current-class samples' mean gradient, each
without the candidate's own sources; ``"buffer|current"`` takes the larger of
the two scores; ``"balanced"`` sums them after dividing each by the norm of
its reference's mean gradient (over the whole set). All are checked against
brute force: for every candidate, autograd gradients of its own loss and of
the mean loss of its two leave-one-out sets (and of the whole sets, for the
norms), on a small linear head (closed form) and on all the parameters of a
small network (``grad_space="full"``).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avalanche_mixplugins import GradMixPlugin
from avalanche_mixplugins.gradients import (
    REFERENCES,
    check_reference,
    flat_buffer_alignment,
    last_layer_buffer_alignment,
)
from tests.support.autograd_reference import dot as _dot
from tests.support.autograd_reference import grad as _grad
from tests.support.autograd_reference import leave_one_out_scores as _brute_force
from tests.support.autograd_reference import set_norms as _set_norms
from tests.support.autograd_reference import soft_ce as _soft_ce


def _expected(pair_scores, reference, norms=None):
    """The combination, by hand, from the two brute-force scores of each candidate."""
    out = []
    for b, c in pair_scores.tolist():
        if reference == "balanced":
            b, c = b / norms[0], c / norms[1]
        if reference == "buffer" or c != c:  # no current set: the buffer's score
            out.append(b)
        elif reference in ("buffer+current", "balanced"):
            out.append(b + c)
        else:
            out.append(b if b != b else max(b, c))
    return torch.tensor(out, dtype=torch.float64)


def _pool(n_buffer, n_current, d, c, seed):
    g = torch.Generator().manual_seed(seed)
    n = n_buffer + n_current
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    # buffer samples hold classes 0..1, current samples classes 2..c-1
    y = torch.cat(
        [
            torch.randint(0, 2, (n_buffer,), generator=g),
            torch.randint(2, c, (n_current,), generator=g),
        ]
    )
    is_buffer = torch.arange(n) < n_buffer
    return x, y, is_buffer


def _candidates(x, y, partner, c, seed, masked):
    g = torch.Generator().manual_seed(seed + 1)
    lam = torch.rand(x.shape[0], generator=g, dtype=torch.float64).view(-1, 1)
    x_mix = lam * x + (1 - lam) * x[partner]
    eye = torch.eye(c, dtype=torch.float64)
    t_mix = lam * eye[y] + (1 - lam) * eye[y[partner]]
    mask = None
    if masked:
        # some candidates trained without the previous classes (ER-ACE's rule)
        mask = torch.zeros(x.shape[0], c, dtype=torch.bool)
        both_current = (y >= 2) & (y[partner] >= 2)
        mask[both_current, :2] = True
    return x_mix, t_mix, mask


CASES = {
    # (buffer samples, current samples, partner): a mixed pool, and a small one
    # where a candidate has no other buffer sample (NaN) or no other current
    # sample (scored against the buffer alone), with a candidate of one source
    "pool": (5, 7, [3, 8, 9, 0, 11, 2, 1, 10, 4, 6, 5, 7]),
    "edges": (2, 2, [1, 0, 3, 2]),
    "edges_self": (3, 2, [1, 1, 4, 2, 3]),
}


@pytest.mark.parametrize(
    ("bias", "masked"), [(True, False), (True, True), (False, True)]
)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("reference", REFERENCES)
def test_last_layer_reference_equals_brute_force(reference, case, bias, masked):
    n_buffer, n_current, partner = CASES[case]
    c, d = 5, 6
    x, y, is_buffer = _pool(n_buffer, n_current, d, c, seed=len(partner))
    partner = torch.tensor(partner)
    x_mix, t_mix, mask = _candidates(x, y, partner, c, seed=len(partner), masked=masked)
    torch.manual_seed(0)
    head = nn.Linear(d, c, bias=bias).double()
    params = list(head.parameters())
    pair = _brute_force(head, params, x, y, is_buffer, x_mix, t_mix, partner, mask, c)
    ref = _expected(pair, reference, _set_norms(head, params, x, y, is_buffer, c))
    with torch.no_grad():
        z, z_mix = head(x), head(x_mix)
    if mask is not None:
        z_mix = z_mix.masked_fill(mask, float("-inf"))
    targets = torch.eye(c, dtype=torch.float64)[y]
    got = last_layer_buffer_alignment(
        x, z, targets, is_buffer, x_mix, z_mix, t_mix, partner,
        bias=bias, reference=reference,
    )  # fmt: skip
    assert torch.equal(torch.isnan(got), torch.isnan(ref))
    ok = ~torch.isnan(ref)
    assert torch.allclose(got[ok], ref[ok], rtol=1e-9, atol=1e-12)
    if reference != "buffer" and case == "pool":
        # the current classes change the scores (the option is not a no-op)
        assert not torch.allclose(got, pair[:, 0])
    if case == "edges":
        # candidates 0, 1 mix the two buffer samples: no other buffer sample
        assert torch.isnan(got[:2]).all() and not torch.isnan(got[2:]).any()
        # candidates 2, 3 mix the two current samples: the buffer alone
        alone = ref[2:] if reference == "balanced" else pair[2:, 0]
        assert torch.allclose(got[2:], alone, rtol=1e-9)


@pytest.mark.parametrize("reference", REFERENCES)
def test_full_space_reference_equals_brute_force(reference):
    """``grad_space="full"``: the flattened per-sample gradients of a small MLP."""
    c, d = 4, 5
    x, y, is_buffer = _pool(4, 6, d, c, seed=3)
    partner = torch.tensor([5, 2, 1, 9, 6, 0, 4, 8, 7, 3])
    x_mix, t_mix, _ = _candidates(x, y, partner, c, seed=3, masked=False)
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(d, 7), nn.Tanh(), nn.Linear(7, c)).double()
    params = list(net.parameters())
    pair = _brute_force(net, params, x, y, is_buffer, x_mix, t_mix, partner, None, c)
    ref = _expected(pair, reference, _set_norms(net, params, x, y, is_buffer, c))
    eye = torch.eye(c, dtype=torch.float64)

    def rows(xs, ts):
        return torch.stack(
            [
                torch.cat([g.flatten() for g in _grad(_soft_ce(net(a[None]), t[None]), params)])
                for a, t in zip(xs, ts)
            ]
        )  # fmt: skip

    got = flat_buffer_alignment(
        rows(x, eye[y]), rows(x_mix, t_mix), is_buffer, partner, reference=reference
    )
    assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("reference", REFERENCES)
def test_without_leave_one_out_the_sets_keep_the_sources(reference):
    """``leave_one_out=False``: the means over every buffer / current sample."""
    c, d = 5, 6
    x, y, is_buffer = _pool(4, 5, d, c, seed=7)
    partner = torch.tensor([4, 5, 6, 7, 0, 1, 2, 3, 8])
    x_mix, t_mix, _ = _candidates(x, y, partner, c, seed=7, masked=False)
    head = nn.Linear(d, c).double()
    params = list(head.parameters())
    eye = torch.eye(c, dtype=torch.float64)
    sets = [is_buffer.nonzero().flatten(), (~is_buffer).nonzero().flatten()]
    g_sets = [_grad(_soft_ce(head(x[s]), eye[y[s]]) / len(s), params) for s in sets]
    pair = []
    for i in range(x.shape[0]):
        g_i = _grad(_soft_ce(head(x_mix[i : i + 1]), t_mix[i : i + 1]), params)
        pair.append([_dot(g_i, g) for g in g_sets])
    norms = [_dot(g, g) ** 0.5 for g in g_sets]
    ref = _expected(torch.tensor(pair, dtype=torch.float64), reference, norms)
    with torch.no_grad():
        z, z_mix = head(x), head(x_mix)
    got = last_layer_buffer_alignment(
        x, z, eye[y], is_buffer, x_mix, z_mix, t_mix, partner,
        leave_one_out=False, reference=reference,
    )  # fmt: skip
    assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12)


def test_reduce_sees_every_reference_sum():
    """Under ``torch.distributed`` every set's sums and count are all-reduced."""
    c, d = 4, 3
    x, y, is_buffer = _pool(3, 3, d, c, seed=0)
    partner = torch.tensor([3, 4, 5, 0, 1, 2])
    x_mix, t_mix, _ = _candidates(x, y, partner, c, seed=0, masked=False)
    head = nn.Linear(d, c).double()
    with torch.no_grad():
        z, z_mix = head(x), head(x_mix)
    eye = torch.eye(c, dtype=torch.float64)
    seen = []
    for reference, n_tensors in (("buffer", 3), ("buffer+current", 6)):
        seen.clear()
        last_layer_buffer_alignment(
            x, z, eye[y], is_buffer, x_mix, z_mix, t_mix, partner,
            reference=reference, reduce=lambda *ts: seen.extend(ts),
        )  # fmt: skip
        assert len(seen) == n_tensors
        counts = [t for t in seen if t.dim() == 0]
        assert [float(t) for t in counts] == [3.0] * (n_tensors // 3)


@pytest.mark.parametrize("bad", ["current", "Buffer", "", None, 1])
def test_unknown_reference_is_refused(bad):
    with pytest.raises(ValueError, match="reference must be one of"):
        check_reference(bad)
    with pytest.raises(ValueError, match="reference"):
        GradMixPlugin(reference=bad)


def test_reference_defaults_to_the_buffer_and_is_keyword_only():
    import inspect

    param = inspect.signature(GradMixPlugin).parameters["reference"]
    assert param.default == "buffer" and param.kind is param.KEYWORD_ONLY
    assert GradMixPlugin(reference="buffer+current", seed=0).reference == (
        "buffer+current"
    )
