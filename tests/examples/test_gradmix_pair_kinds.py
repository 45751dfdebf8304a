"""The pair-kind diagnostic counts what the mixing plugins really mixed.

Random-pair Mixup mixes every sample of every step, so its three shares add
up to one; GradMix drops pairs, so its shares add up to less; and a plugin
that mixes only buffer-current pairs shows nothing in the other two kinds.
Real runs on split digits (small, one epoch).
"""

from __future__ import annotations

import pytest

COMMON = ["--dataset", "digits", "--per-class", "60", "--epochs", "1"]
COMMON += ["--mem-size", "40", "--strategy", "er", "--seed", "0"]


@pytest.fixture(scope="module")
def kinds(script):
    return script("benchmarks/gradmix_pair_kinds.py")


def _rows(text):
    rows = [
        line
        for line in text.splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    return [[float(c) for c in r.strip("|").split("|")] for r in rows[1:]]


def test_mixup_mixes_every_sample(kinds):
    rows = _rows(kinds.main([*COMMON, "--aug", "mixup"]))
    assert [r[0] for r in rows] == [2, 3, 4, 5]
    for _, cc, cb, bb, *_ in rows:
        assert cc + cb + bb == pytest.approx(1.0, abs=0.011)  # rounded to 0.01
        assert min(cc, cb, bb) > 0


def test_gradmix_drops_pairs(kinds):
    rows = _rows(kinds.main([*COMMON, "--aug", "gradmix"]))
    shares = [r[1] + r[2] + r[3] for r in rows]
    assert all(s <= 1.0 + 1e-9 for s in shares)
    assert min(shares) < 0.95  # the score filter left samples out somewhere


def test_buffer_current_pairing_shows_only_that_kind(kinds, monkeypatch):
    cl_runs = kinds.run.__globals__
    plugin_for = cl_runs["plugin_for"]

    def only_buffer_current(cfg):
        cfg.plugin_kwargs = {"pairing": "buffer_current"}
        return plugin_for(cfg)

    monkeypatch.setitem(cl_runs, "plugin_for", only_buffer_current)
    rows = _rows(kinds.main([*COMMON, "--aug", "mixup"]))
    for _, cc, cb, bb, *_ in rows:
        assert cc == 0 and bb == 0 and cb > 0


def test_steps_without_a_mixed_term_count_as_unmixed(kinds, monkeypatch):
    # Mixup mixing half of the steps: about half of the samples are mixed
    cl_runs = kinds.run.__globals__
    plugin_for = cl_runs["plugin_for"]

    def half_the_steps(cfg):
        cfg.plugin_kwargs = {"prob": 0.5}
        return plugin_for(cfg)

    monkeypatch.setitem(cl_runs, "plugin_for", half_the_steps)
    rows = _rows(kinds.main([*COMMON, "--aug", "mixup"]))
    shares = [r[1] + r[2] + r[3] for r in rows]
    assert 0.1 < sum(shares) / len(shares) < 0.9
