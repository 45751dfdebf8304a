"""SemiSupervisedStrategy under torchrun with two CPU processes (gloo).

Every rank must hold the same FlexMatch thresholds and SoftMatch statistics
after each step, built from every rank's unlabeled samples (each rank draws
its own share of the unlabeled data).
"""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def result(tmp_path_factory, torchrun):
    """Run the worker once under torchrun; return rank 0's summary."""
    out = tmp_path_factory.mktemp("dist") / "ssl.json"
    torchrun("ssl_worker.py", str(out), timeout=300)
    return json.loads(out.read_text())


@pytest.mark.distributed
@pytest.mark.parametrize("algorithm", ["flexmatch", "softmatch"])
def test_statistics_identical_on_every_rank_after_each_step(result, algorithm):
    res = result[algorithm]
    assert res["steps"] == 6
    assert res["identical_steps"] == res["steps"]
    assert res["params_equal"]


@pytest.mark.distributed
def test_each_rank_draws_its_own_unlabeled_share(result):
    rank0, rank1 = (set(d) for d in result["flexmatch"]["drawn"])
    assert rank0 and rank1
    assert not rank0 & rank1  # DistributedSampler: disjoint shares in one pass
    assert result["flexmatch"]["gather_ok"]  # strategy.gather_from_ranks, rank order


@pytest.mark.distributed
def test_flexmatch_table_holds_samples_of_every_rank(result):
    res = result["flexmatch"]
    rank0, rank1 = (set(d) for d in res["drawn"])
    selected = {i for i, c in enumerate(res["selected"]) if c >= 0}
    assert selected <= rank0 | rank1
    assert selected & rank0 and selected & rank1
    assert any(t > 0 for t in res["thresholds"])


@pytest.mark.distributed
def test_softmatch_statistics_moved(result):
    res = result["softmatch"]
    assert res["mu"] != pytest.approx(0.1)  # initialised to 1/C, then updated
    assert sum(res["p_model"]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.distributed
def test_calibratemix_tables_hold_every_ranks_samples(result):
    res = result["calibratemix"]
    assert res["aum_identical"] and res["apm_identical"] and res["params_equal"]
    rank0, rank1 = (set(d) for d in res["drawn"])
    updated = set(res["apm_rows"])
    assert updated == rank0 | rank1  # APM rows of both ranks' unlabeled samples
    assert len(res["aum_rows"]) > 0
