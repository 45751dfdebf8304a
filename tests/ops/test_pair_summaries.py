"""What GradMix reports of its scores (helpful pairs, helpful fraction), for
one score matrix and for the per-operation scores of ``mix="auto"``,
against hand-worked matrices."""

from __future__ import annotations

import math

import torch

from avalanche_mixplugins.operation_pairs import OperationPairs
from avalanche_mixplugins.pairing import (
    GradientPairs,
    helpful_class_pairs,
    helpful_pair_fraction,
)

SCORES = torch.tensor([[0.5, -1.0, 0.0], [-1.0, 2.0, 0.3], [0.0, 0.3, 0.0]])
SEEN = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.bool)
# upper triangle, scored: (0,0)=.5 (1,1)=2 (1,2)=.3 helpful, (0,1)=-1 not;
# (0,2) and (2,2) unscored


def test_helpful_pairs_and_fraction_of_one_matrix():
    assert helpful_class_pairs(SCORES, SEEN) == [
        (0, 0, 0.5),
        (1, 1, 2.0),
        (1, 2, 0.30000001192092896),
    ]
    assert helpful_pair_fraction(SCORES, SEEN) == 3 / 4
    nothing = torch.zeros(3, 3, dtype=torch.bool)
    assert helpful_class_pairs(SCORES, nothing) == []
    assert math.isnan(helpful_pair_fraction(SCORES, nothing))
    policy = GradientPairs()
    policy.scores, policy.seen = SCORES, SEEN
    assert policy.helpful_fraction() == 3 / 4
    assert policy.helpful_pairs() == helpful_class_pairs(SCORES, SEEN)


def test_a_pair_is_helpful_when_some_operation_makes_it_so():
    policy = OperationPairs()
    mixup, cutmix = policy.policies
    mixup.scores, mixup.seen = SCORES, SEEN
    # CutMix: (0,1) helpful (0.4), (0,2) now scored and harmful, (1,1) harmful
    cutmix.scores = torch.tensor([[0.0, 0.4, -0.2], [0.4, -3.0, 0.0], [-0.2, 0.0, 0.0]])
    cutmix.seen = torch.tensor([[0, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    # best over the operations that scored each pair: (0,0)=.5, (0,1)=.4,
    # (0,2)=-.2, (1,1)=2, (1,2)=.3; (2,2) unscored -> 4 of 5 helpful
    assert [(a, b) for a, b, _ in policy.helpful_pairs()] == [
        (0, 0),
        (0, 1),
        (1, 1),
        (1, 2),
    ]
    assert policy.helpful_pairs()[1][2] == torch.tensor(0.4).item()
    assert policy.helpful_fraction() == 4 / 5
