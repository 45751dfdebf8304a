"""CalibrateMix's pairing at its edges, against brute force and exact messages.

A kind with a single candidate, ``k`` equal to the batch, the size of ``k``,
reproducible draws from the caller's generator, and the errors.
"""

from __future__ import annotations

import pytest
import torch

from ssl_ext.calibratemix.pairing import (
    cosine_similarity_matrix,
    dissimilar_partners,
    least_similar,
    num_candidates,
)


def test_a_kind_with_one_candidate_always_gives_it():
    gen = torch.Generator().manual_seed(0)
    x_lab, x_ulb = torch.rand(6, 1, 3, 3, generator=gen), torch.rand(5, 1, 3, 3)
    lab_easy = torch.tensor([True, False, True, False, True, False])
    ulb_easy = torch.tensor([False, False, True, False, False])  # one easy
    for _ in range(20):
        p = dissimilar_partners(x_lab, x_ulb, lab_easy, ulb_easy, k=3, generator=gen)
        assert bool(p.valid.all())
        assert bool((p.partner[~lab_easy] == 2).all())  # the only unlabeled-easy
        assert not bool(ulb_easy[p.partner[lab_easy]].any())


def test_draws_come_from_the_callers_generator_only():
    x_lab, x_ulb = torch.rand(8, 1, 3, 3), torch.rand(12, 1, 3, 3)
    lab_easy = torch.arange(8) % 2 == 0
    ulb_easy = torch.arange(12) % 3 == 0
    torch.manual_seed(1)
    before = torch.get_rng_state()
    runs = [
        dissimilar_partners(
            x_lab,
            x_ulb,
            lab_easy,
            ulb_easy,
            k=4,
            generator=torch.Generator().manual_seed(7),
        ).partner
        for _ in range(2)
    ]
    assert torch.equal(torch.get_rng_state(), before)  # global RNG untouched
    assert torch.equal(runs[0], runs[1])


def test_least_similar_takes_every_column_and_num_candidates_bounds():
    sim = torch.tensor([[0.3, -0.2, 0.9], [0.1, 0.0, -1.0]])
    allowed = torch.tensor([[True, True, False], [True, True, True]])
    out = least_similar(sim, allowed, 3)  # k = M is allowed
    assert out.tolist() == [[1, 0, 2], [2, 1, 0]]
    assert num_candidates(2, 0.05) == 1  # two samples are enough
    assert num_candidates(10, 0.5) == 5  # at most the smaller half
    assert num_candidates(224, 15 / 224) == 15


def test_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match=r"^need at least 2 unlabeled samples, got 1$"):
        num_candidates(1, 0.5)
    with pytest.raises(ValueError, match=r"^k must be in \[1, 3\], got 4$"):
        least_similar(torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool), 4)
    with pytest.raises(
        ValueError, match=r"^allowed has shape \(2, 2\), expected \(2, 3\)$"
    ):
        least_similar(torch.zeros(2, 3), torch.ones(2, 2, dtype=torch.bool), 1)
    with pytest.raises(
        ValueError,
        match=r"^inputs must have the same sample shape, got \(1, 3, 3\) and \(1, 2, 2\)$",
    ):
        cosine_similarity_matrix(torch.zeros(2, 1, 3, 3), torch.zeros(2, 1, 2, 2))
    x_lab, x_ulb = torch.rand(4, 2), torch.rand(5, 2)
    good_l, good_u = torch.ones(4, dtype=torch.bool), torch.ones(5, dtype=torch.bool)
    message = (
        r"^labeled_easy and unlabeled_easy/unlabeled_hard must be bool masks of "
        r"shapes \(4,\) and \(5,\), got {}, {} and {}$"
    )
    cases = [
        (
            torch.ones(3, dtype=torch.bool),
            good_u,
            good_u,
            r"\(3,\)",
            r"\(5,\)",
            r"\(5,\)",
        ),
        (
            good_l,
            torch.ones(2, dtype=torch.bool),
            good_u,
            r"\(4,\)",
            r"\(2,\)",
            r"\(5,\)",
        ),
        (
            good_l,
            good_u,
            torch.ones(6, dtype=torch.bool),
            r"\(4,\)",
            r"\(5,\)",
            r"\(6,\)",
        ),
    ]
    for lab, easy, hard, *shapes in cases:
        with pytest.raises(ValueError, match=message.format(*shapes)):
            dissimilar_partners(x_lab, x_ulb, lab, easy, unlabeled_hard=hard, k=1)
