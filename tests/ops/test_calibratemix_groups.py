"""CalibrateMix's two mix groups: one ``lam ~ Beta(alpha, alpha)`` each.

Mix 1 (labeled-easy with unlabeled-hard) and mix 2 (labeled-hard with
unlabeled-easy) each draw their own coefficient (arXiv:2511.12964): within
a group every sample shares it, across groups the two are independent draws
of the Beta distribution. Checked on the mixed batch itself (the inputs are
recomputed from the recovered pairs) and, over many iterations, against the
Beta distribution's moments.
"""

from __future__ import annotations

import math

import torch

from ssl_ext.calibratemix import make_mixed_batch


def one_batch(gen, b=8, u=16, alpha=0.4):
    x_lab = torch.rand(b, 1, 4, 4, generator=gen)
    x_ulb = torch.rand(u, 1, 4, 4, generator=gen)
    aum = torch.randn(b, generator=gen)
    apm = torch.randn(u, generator=gen)
    mixed = make_mixed_batch(
        x_lab, x_ulb, aum, apm, alpha=alpha, k_fraction=0.25, generator=gen
    )
    return x_lab, x_ulb, aum, mixed


def test_each_group_has_its_own_lambda_and_the_inputs_are_mixed_with_it():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        x_lab, x_ulb, aum, mixed = one_batch(gen)
        b = x_lab.shape[0]
        # labeled-easy (the upper half of AUM) is group 0, labeled-hard group 1
        order = sorted(range(b), key=lambda i: (float(aum[i]), i))
        easy = set(order[b // 2 :])
        for row in range(b):
            src = int(mixed.labeled[row])
            assert int(mixed.group[row]) == (0 if src in easy else 1)
        lam0 = mixed.lam[mixed.group == 0]
        lam1 = mixed.lam[mixed.group == 1]
        assert bool((lam0 == lam0[0]).all()) and bool((lam1 == lam1[0]).all())
        assert float(lam0[0]) != float(lam1[0])  # two draws, not one
        lam = mixed.lam.view(-1, 1, 1, 1)
        expected = lam * x_lab[mixed.labeled] + (1 - lam) * x_ulb[mixed.partner]
        torch.testing.assert_close(mixed.x, expected, rtol=0, atol=1e-6)


def test_the_two_lambdas_are_independent_beta_draws():
    """Over n iterations: each group's lambda has the Beta(a, a) mean 1/2 and
    variance 1 / (4 (2a + 1)); the two are uncorrelated. Bounds at about 4.5
    standard errors (fixed seed)."""
    alpha, n = 0.4, 400
    gen = torch.Generator().manual_seed(1)
    pairs = []
    for _ in range(n):
        *_, mixed = one_batch(gen, alpha=alpha)
        pairs.append(
            (
                float(mixed.lam[mixed.group == 0][0]),
                float(mixed.lam[mixed.group == 1][0]),
            )
        )
    lam = torch.tensor(pairs, dtype=torch.float64)
    var = 1.0 / (4.0 * (2.0 * alpha + 1.0))
    for g in range(2):
        assert abs(float(lam[:, g].mean()) - 0.5) < 4.5 * math.sqrt(var / n)
        assert abs(float(lam[:, g].var()) - var) < 0.3 * var
    corr = float(torch.corrcoef(lam.t())[0, 1])
    assert abs(corr) < 4.5 / math.sqrt(n), corr
