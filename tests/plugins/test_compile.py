"""Training with ``torch.compile(model)`` gives the eager run's losses and
weights, for every mixing plugin (ER on split digits) and for CalibrateMix
on the semi-supervised strategy.

Each run is repeated with the same seeds, once with the model as is and once
compiled; the per-iteration losses and the final parameters must agree to
1e-5. Most runs compile with ``backend="aot_eager"`` (Dynamo's graph capture
and AOTAutograd's joint forward/backward graphs, without generating C++):
that is the part that sees the plugins' tensors and hooks, and it keeps the
file fast. One run (Mixup, one experience) compiles with the default
inductor backend, which generates and builds C++ kernels on the CPU (12 s
here with its kernel cache warm, against 86 s for two experiences of
GradMix).
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
from tests.support.cl import cl_strategy
from tests.support.nets import PlainConvNet
from tests.support.semi_supervised import ssl_digits, ssl_strategy

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class Losses(SupervisedPlugin):
    """Every training iteration's loss (read in the test, after the step)."""

    def __init__(self):
        super().__init__()
        self.values: list[float] = []

    def after_training_iteration(self, strategy, **kwargs):
        self.values.append(float(strategy.loss.detach()))


def _params(model) -> list[torch.Tensor]:
    model = getattr(model, "_orig_mod", model)
    return [p.detach().clone() for p in model.parameters()]


def _compiled(model, backend):
    if backend is None:
        return model
    torch._dynamo.reset()
    return torch.compile(model, backend=backend)


def train_cl(digits_benchmark, make_plugin, backend, experiences=2):
    torch.manual_seed(0)
    model = PlainConvNet()
    losses = Losses()
    strategy = cl_strategy(
        "naive_replay", _compiled(model, backend), [make_plugin(), losses]
    )
    for exp in digits_benchmark.train_stream[:experiences]:
        strategy.train(exp)
    return losses.values, _params(model)


def train_ssl(algorithm, backend):
    torch.manual_seed(0)
    bench, unlabeled = ssl_digits(per_class=4, n_test=20, n_unlabeled=64)
    model = PlainConvNet()
    losses = Losses()
    cm = ssl_ext.CalibrateMixPlugin(mode="fast", warmup=0, seed=0)
    strategy = ssl_strategy(
        _compiled(model, backend),
        unlabeled,
        [cm, losses],
        algorithm=algorithm,
        train_iterations=5,
    )
    strategy.train(bench.train_stream[0])
    return losses.values, _params(model)


def assert_same(eager, compiled):
    (loss_e, params_e), (loss_c, params_c) = eager, compiled
    assert len(loss_e) == len(loss_c) >= 5
    torch.testing.assert_close(
        torch.tensor(loss_c), torch.tensor(loss_e), rtol=1e-5, atol=1e-5
    )
    for p_c, p_e in zip(params_c, params_e, strict=True):
        torch.testing.assert_close(p_c, p_e, rtol=1e-5, atol=1e-5)
    # the compared runs trained: the weights moved from their initialisation
    torch.manual_seed(0)
    start = _params(PlainConvNet())
    assert any(not torch.allclose(a, b) for a, b in zip(params_e, start))


PLUGINS = {
    "mixup": lambda: MixupPlugin(seed=0),
    "cutmix": lambda: CutMixPlugin(seed=0),
    "mixup-cutmix": lambda: MixupCutMixPlugin(seed=0),
    "gradmix-mixup": lambda: GradMixPlugin(seed=0),
    "gradmix-cutmix": lambda: GradMixPlugin(seed=0, mix="cutmix"),
}


@pytest.mark.parametrize("name", list(PLUGINS))
def test_compiled_model_trains_like_eager_with_each_mixing_plugin(
    digits_benchmark, name
):
    make = PLUGINS[name]
    eager = train_cl(digits_benchmark, make, None)
    compiled = train_cl(digits_benchmark, make, "aot_eager")
    assert_same(eager, compiled)


@pytest.mark.parametrize("algorithm", ["fixmatch", "softmatch"])
def test_compiled_model_trains_like_eager_with_calibratemix(algorithm):
    assert_same(train_ssl(algorithm, None), train_ssl(algorithm, "aot_eager"))


def test_inductor_compiled_model_trains_like_eager_with_mixup(digits_benchmark):
    """The default backend, which generates and builds C++ kernels (one
    experience: every further batch shape builds more of them)."""
    make = PLUGINS["mixup"]
    eager = train_cl(digits_benchmark, make, None, experiences=1)
    compiled = train_cl(digits_benchmark, make, "inductor", experiences=1)
    assert_same(eager, compiled)
