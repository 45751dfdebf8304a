"""The training step never waits for the host, emulated on the CPU.

Every setup trains two experiences (class-incremental digits) or one
semi-supervised experience under :class:`~tests.support.host_sync.HostSyncAudit`
and counts, from the third iteration of the last experience on (the first
iterations of an experience validate labels once), every read of a device
value, blocking host-to-device copy, CPU-generator draw for a device tensor
and data-dependent shape in the package's code: there must be none.
"""

from __future__ import annotations

import pytest
import torch
from avalanche.core import SupervisedPlugin

import ssl_ext
from avalanche_mixplugins import (
    CutMixPlugin,
    GradMixPlugin,
    MixupCutMixPlugin,
    MixupPlugin,
)
from avalanche_mixplugins.mixing import one_hot, sample_lambda
from avalanche_mixplugins.pairing import draw_partners
from tests.support.cl import cl_strategy
from tests.support.host_sync import HostSyncAudit
from tests.support.nets import PlainConvNet, make_mlp
from tests.support.semi_supervised import ssl_digits, ssl_strategy

FIRST_COUNTED = 2
"""Iterations of the last experience before counting starts (steady state)."""


class _Window(SupervisedPlugin):
    """Switches the audit's counting on (first in the plugin list) or off
    (last) around the steady-state iterations of the last experience."""

    def __init__(self, audit: HostSyncAudit, on: bool, last_exp: int):
        super().__init__()
        self.audit, self.on, self.last_exp, self.it = audit, on, last_exp, 0
        self.counted = 0

    def before_training_exp(self, strategy, **kwargs):
        self.it = 0

    def before_training_iteration(self, strategy, **kwargs):
        if not self.on:
            return
        for p in strategy.plugins:  # the generators that live on the device
            if hasattr(p, "_generator_for"):
                self.audit.register(p._generator_for(strategy.device))
        exp = strategy.experience.current_experience
        if exp == self.last_exp and self.it >= FIRST_COUNTED:
            self.audit.counting = True
            self.counted += 1
        self.it += 1

    def after_training_iteration(self, strategy, **kwargs):
        if not self.on:
            self.audit.counting = False


CL_SETUPS = {
    "er+mixup": ("naive_replay", lambda: MixupPlugin(seed=0)),
    "er+cutmix": ("naive_replay", lambda: CutMixPlugin(seed=0)),
    "er+gradmix": ("naive_replay", lambda: GradMixPlugin(seed=0)),
    "er+gradmix-cutmix": ("naive_replay", lambda: GradMixPlugin(seed=0, mix="cutmix")),
    "er+gradmix-auto-cutmix": (
        "naive_replay",
        lambda: GradMixPlugin(seed=0, mix="auto"),
    ),
    "er+switch-cutmix": ("naive_replay", lambda: MixupCutMixPlugin(seed=0)),
    "er+switch-elem-cutmix": (
        "naive_replay",
        lambda: MixupCutMixPlugin(seed=0, mode="elem"),
    ),
    "er_ace+gradmix": ("er_ace", lambda: GradMixPlugin(seed=0)),
    "er_ace+gradmix-buffer+current": (
        "er_ace",
        lambda: GradMixPlugin(seed=0, reference="buffer+current"),
    ),
    "er_ace+gradmix-buffer|current": (
        "er_ace",
        lambda: GradMixPlugin(seed=0, reference="buffer|current"),
    ),
    "er_ace+gradmix-balanced": (
        "er_ace",
        lambda: GradMixPlugin(seed=0, reference="balanced"),
    ),
    "der+gradmix": ("der", lambda: GradMixPlugin(seed=0)),
}
SSL_SETUPS = [
    (algo, cm)
    for algo in ("fixmatch", "softmatch", "flexmatch")
    for cm in (False, True)
]


def audit_cl(digits_benchmark, name: str) -> tuple[HostSyncAudit, int]:
    setup, make_plugin = CL_SETUPS[name]
    audit = HostSyncAudit()
    on, off = _Window(audit, True, 1), _Window(audit, False, 1)
    model = PlainConvNet() if "cutmix" in name else make_mlp()
    strategy = cl_strategy(setup, model, [on, make_plugin(), off])
    with audit:
        for exp in digits_benchmark.train_stream[:2]:
            strategy.train(exp)
    return audit, on.counted


def audit_ssl(algorithm: str, calibratemix: bool) -> tuple[HostSyncAudit, int]:
    bench, unlabeled = ssl_digits(per_class=4, n_test=20, n_unlabeled=64)
    audit = HostSyncAudit()
    on, off = _Window(audit, True, 0), _Window(audit, False, 0)
    plugins = [on]
    if calibratemix:
        plugins.append(ssl_ext.CalibrateMixPlugin(mode="fast", warmup=0, seed=0))
    plugins.append(off)
    strategy = ssl_strategy(
        PlainConvNet(), unlabeled, plugins, algorithm=algorithm, train_iterations=5
    )
    with audit:
        strategy.train(bench.train_stream[0])
    return audit, on.counted


@pytest.mark.parametrize("name", list(CL_SETUPS))
def test_cl_steps_never_wait_for_the_host(digits_benchmark, name):
    audit, counted = audit_cl(digits_benchmark, name)
    assert counted >= 3
    assert audit.events == [], "\n".join(audit.sites())


@pytest.mark.parametrize(("algorithm", "calibratemix"), SSL_SETUPS)
def test_ssl_steps_never_wait_for_the_host(algorithm, calibratemix):
    audit, counted = audit_ssl(algorithm, calibratemix)
    assert counted >= 3
    assert audit.events == [], "\n".join(audit.sites())


def test_the_audit_sees_each_kind_of_round_trip_in_package_code():
    """The detector is not blind: package calls that do wait for the host are
    recorded, each with its kind and site (a label check reads the labels; a
    CPU generator draws for device tensors; a CPU generator moves the ``N x N``
    weights to the host and the partners back)."""
    audit = HostSyncAudit()
    with audit:
        y = torch.arange(6, device="cpu") % 3  # a device tensor
        weights = torch.ones(6, 6, device="cpu")
        audit.counting = True
        one_hot(y, 3, check=True)
        sample_lambda(1.0, 6, device="cpu", generator=torch.Generator())
        draw_partners(weights, generator=torch.Generator())
        y.sum().item()  # this file is not package code: not recorded
        audit.counting = False
    kinds = {(e.kind, e.site.split(":")[0]) for e in audit.events}
    assert ("read", "avalanche_mixplugins/mixing.py") in kinds
    assert ("cpu_generator", "avalanche_mixplugins/mixing.py") in kinds
    assert {k for k, f in kinds if f == "avalanche_mixplugins/pairing.py"} >= {
        "read",
        "copy",
    } or ("cpu_generator", "avalanche_mixplugins/pairing.py") in kinds
    assert all(
        e.site.startswith(("avalanche_mixplugins", "ssl_ext")) for e in audit.events
    )
