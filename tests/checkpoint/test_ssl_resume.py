"""Exact resume of the semi-supervised strategy (SoftMatch, FlexMatch, with
and without CalibrateMix) inside an experience and across one, on digits."""

from __future__ import annotations

import pytest
import torch
from avalanche.training.plugins import ReplayPlugin

from avalanche_mixplugins.checkpoint import (
    ResumableInExperience,
    StateCheckpointPlugin,
    load_checkpoint,
    save_checkpoint,
)
from ssl_ext.calibratemix_plugin import CalibrateMixPlugin
from tests.checkpoint.runs import (
    ACC,
    LOSS,
    DrawsAtExperienceStart,
    InterruptAt,
    Interrupted,
    evaluator,
)
from tests.support.nets import flat_params, two_conv_cnn
from tests.support.semi_supervised import ssl_digits, ssl_strategy


def ssl_data():
    return ssl_digits(per_class=6, n_test=150, n_experiences=2, n_unlabeled=400)


def build_ssl(unlabeled, seed: int, calibratemix: bool, extra=(), **kwargs):
    torch.manual_seed(seed)
    model = two_conv_cnn()
    if calibratemix:
        extra = [CalibrateMixPlugin(mode="fast", warmup=3, seed=4), *extra]
    return ssl_strategy(
        model,
        unlabeled,
        [ReplayPlugin(mem_size=30), DrawsAtExperienceStart(), *extra],
        momentum=0.9,
        algorithm=kwargs.pop("algorithm", "softmatch"),
        train_iterations=12,
        ema_decay=0.9,
        evaluator=evaluator(),
        **kwargs,
    )


@pytest.mark.parametrize(
    "calibratemix", [False, True], ids=["softmatch", "calibratemix"]
)
def test_softmatch_resumes_exactly_inside_an_experience(tmp_path, calibratemix):
    bench, unlabeled = ssl_data()
    train, test = bench.train_stream, bench.test_stream

    torch.manual_seed(0)
    ref = build_ssl(unlabeled, seed=0, calibratemix=calibratemix)
    for exp in train:
        ref.train(exp)
    ref_res = ref.eval(test)

    path = tmp_path / "ssl.pt"
    torch.manual_seed(0)
    run = build_ssl(
        unlabeled,
        seed=0,
        calibratemix=calibratemix,
        extra=[StateCheckpointPlugin(path, every=5), InterruptAt(1, 7)],
    )
    with pytest.raises(Interrupted):
        for exp in train:
            run.train(exp)
    del run

    torch.manual_seed(99)
    resumed = build_ssl(unlabeled, seed=5, calibratemix=calibratemix)
    info = load_checkpoint(path, resumed)
    assert (info["experience"], info["iteration"]) == (1, 5)
    assert resumed.clock.train_iterations == 12 + 5
    for exp in train[info["experience"] :]:
        resumed.train(exp)
    res = resumed.eval(test)

    assert res[ACC] == pytest.approx(ref_res[ACC], abs=1e-6)
    assert res[LOSS] == pytest.approx(ref_res[LOSS], abs=1e-6)
    torch.testing.assert_close(
        flat_params(resumed.model), flat_params(ref.model), rtol=0, atol=1e-6
    )
    a, b = resumed.pseudo_labeler.state_dict(), ref.pseudo_labeler.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    torch.testing.assert_close(
        flat_params(resumed.ema.module), flat_params(ref.ema.module), rtol=0, atol=1e-6
    )
    assert resumed.clock.train_iterations == ref.clock.train_iterations == 24
    if calibratemix:
        mine, theirs = resumed.plugins[2], ref.plugins[2]
        assert isinstance(mine, CalibrateMixPlugin) and mine.iteration == 24
        assert mine.mix_loss is not None  # the mixed loss was on after the warm-up
        for table in ("aum", "apm"):
            a = getattr(mine, table).state_dict()
            b = getattr(theirs, table).state_dict()
            for key in a:
                torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_flexmatch_statistics_carry_over_an_experience_boundary(tmp_path):
    """A named algorithm is built at the first experience of a fresh strategy:
    the saved statistics must be loaded then (same unlabeled dataset)."""
    bench, unlabeled = ssl_data()
    train, test = bench.train_stream, bench.test_stream
    kw = dict(algorithm="flexmatch", algorithm_kwargs={"threshold": 0.3})

    ref = build_ssl(unlabeled, seed=0, calibratemix=True, **kw)
    for exp in train:
        ref.train(exp)
    ref_res = ref.eval(test)

    run = build_ssl(unlabeled, seed=0, calibratemix=True, **kw)
    run.train(train[0])
    save_checkpoint(tmp_path / "b.pt", run)
    assert (run.pseudo_labeler.selected_label >= 0).any()

    resumed = build_ssl(unlabeled, seed=3, calibratemix=True, **kw)
    info = load_checkpoint(tmp_path / "b.pt", resumed)
    assert info["next_experience"] == 1 and info["experience"] is None
    resumed.train(train[1])
    res = resumed.eval(test)
    assert torch.equal(
        resumed.pseudo_labeler.selected_label, ref.pseudo_labeler.selected_label
    )
    assert res[LOSS] == pytest.approx(ref_res[LOSS], abs=1e-6)
    torch.testing.assert_close(
        flat_params(resumed.model), flat_params(ref.model), rtol=0, atol=1e-6
    )


def test_format_2_files_of_the_ssl_strategy_still_load(tmp_path):
    """Format 2 kept the strategy state under ``ssl``, with the position inside
    it: such files load, and say where to continue."""
    bench, unlabeled = ssl_data()
    path = tmp_path / "v3.pt"
    run = build_ssl(
        unlabeled,
        seed=0,
        calibratemix=False,
        extra=[StateCheckpointPlugin(path, every=5), InterruptAt(0, 5)],
    )
    assert isinstance(run, ResumableInExperience)
    with pytest.raises(Interrupted):
        run.train(bench.train_stream[0])
    state = torch.load(path, weights_only=True)
    assert state["format"] == 3 and state["position"] == {
        "experience": 0,
        "iteration": 5,
    }
    state["format"] = 2
    state["ssl"] = state.pop("strategy")
    del state["position"]
    torch.save(state, tmp_path / "v2.pt")

    infos, labelers = [], []
    for name in ("v3.pt", "v2.pt"):
        fresh = build_ssl(unlabeled, seed=1, calibratemix=False)
        infos.append(load_checkpoint(tmp_path / name, fresh))
        fresh.train(bench.train_stream[0])
        labelers.append(fresh.pseudo_labeler.state_dict())
    assert infos[0] == infos[1] and (infos[1]["experience"], infos[1]["iteration"]) == (
        0,
        5,
    )
    for key in labelers[0]:
        assert torch.equal(labelers[0][key], labelers[1][key])
