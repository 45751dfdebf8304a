"""Data and the strategy of the semi-supervised strategy tests."""

from __future__ import annotations

import pytest

from tests.support.semi_supervised import (
    first_per_class,
    padded_digits,
    ssl_digits,
    ssl_strategy,
)


@pytest.fixture(scope="module")
def digits():
    """Digits padded to 16x16: 5 labeled images per class (``x_lab``,
    ``y_lab``), every train image (``x_ulb``; ``y_ulb`` only to check sample
    ids, never given to the strategy) and the test images."""
    x_tr, y_tr, x_te, y_te = padded_digits()
    lab = first_per_class(y_tr, 5)
    return {
        "x_lab": x_tr[lab],
        "y_lab": y_tr[lab],
        "x_ulb": x_tr,
        "y_ulb": y_tr,
        "x_te": x_te,
        "y_te": y_te,
    }


@pytest.fixture
def labeled_stream():
    """``labeled_stream(n_experiences=1)``: a fresh class-incremental benchmark
    of the labeled images of ``digits`` (seed 0), tested on the first 100 test
    images."""

    def make(n_experiences: int = 1):
        bench, _ = ssl_digits(per_class=5, n_test=100, n_experiences=n_experiences)
        return bench

    return make


@pytest.fixture
def make_strategy():
    """``make_strategy(model, unlabeled, plugins=(), **kwargs)``: the tests'
    strategy (:func:`tests.support.semi_supervised.ssl_strategy`) with SGD
    momentum 0.9."""

    def make(model, unlabeled, plugins=(), **kwargs):
        return ssl_strategy(model, unlabeled, plugins, momentum=0.9, **kwargs)

    return make
