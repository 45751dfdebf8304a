"""The one spread over seeds that every results table prints."""

import pytest

from avalanche_mixplugins.experiments.runs import SEED_STD_DDOF, seed_std


def test_seed_std_is_the_population_std():
    # 2 and 4: mean 3, squared deviations 1 and 1 over n = 2 (not n - 1 = 1)
    assert seed_std([2.0, 4.0]) == pytest.approx(1.0)
    # 1, 2, 3, 4: squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5, over 4
    assert seed_std([1, 2, 3, 4]) == pytest.approx((5 / 4) ** 0.5)
    assert seed_std([0.7]) == 0.0
    assert SEED_STD_DDOF == 0


def test_seed_std_refuses_no_values():
    with pytest.raises(ValueError, match="at least one"):
        seed_std([])
