"""CalibrateMix's median split on ties and bad masks, against a Python sort.

Ties are broken by position (documented): checked on batches large enough
that an unstable sort reorders equal scores.
"""

from __future__ import annotations

import pytest
import torch

from ssl_ext.algorithms import FixMatch
from ssl_ext.calibratemix.split import median_split, median_split_masks


def python_split(scores, decided):
    """(easy, hard) positions: sort the decided ones by (score, position)."""
    order = sorted((s, i) for i, (s, d) in enumerate(zip(scores, decided)) if d)
    half = len(order) // 2
    return [i for _, i in order[half:]], [i for _, i in order[:half]]


@pytest.mark.parametrize("n", [101, 400])
def test_ties_are_broken_by_position(n):
    gen = torch.Generator().manual_seed(n)
    scores = torch.randint(0, 3, (n,), generator=gen).float()
    decided = torch.rand(n, generator=gen) < 0.7
    easy, hard = median_split(scores)
    want_easy, want_hard = python_split(scores.tolist(), [True] * n)
    assert easy.tolist() == want_easy and hard.tolist() == want_hard
    e, h = median_split_masks(scores, decided)
    want_easy, want_hard = python_split(scores.tolist(), decided.tolist())
    assert torch.nonzero(e).flatten().tolist() == sorted(want_easy)
    assert torch.nonzero(h).flatten().tolist() == sorted(want_hard)
    e, h = median_split_masks(scores)  # no mask: every sample is decided
    want_easy, want_hard = python_split(scores.tolist(), [True] * n)
    assert torch.nonzero(h).flatten().tolist() == sorted(want_hard)


def test_a_bad_decided_mask_is_refused_with_its_shape_and_dtype():
    scores = torch.zeros(4)
    with pytest.raises(
        ValueError,
        match=r"^decided must be a bool mask of shape \(4,\), got \(3,\) torch.bool$",
    ):
        median_split_masks(scores, torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"got \(4,\) torch.float32$"):
        median_split_masks(scores, torch.ones(4))


def test_fixmatch_names_a_bad_threshold():
    with pytest.raises(ValueError, match=r"^threshold must be in \[0, 1\], got 1.5$"):
        FixMatch(threshold=1.5)
