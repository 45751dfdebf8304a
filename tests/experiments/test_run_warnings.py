"""The examples hide exactly the third-party warnings they list (message,
category and module each), never a warning of this package."""

from __future__ import annotations

import warnings

import avalanche_mixplugins.plugins.gradmix as gradmix_module
from avalanche_mixplugins.experiments.runs import known_warnings_silenced
from tests.support.cl import cl_strategy
from tests.support.nets import make_mlp

QP = "no QP solver found on your system"


def _shown_during(run, silenced: bool) -> list[tuple[type, str]]:
    shown = []

    def record(message, category, filename, lineno, file=None, line=None):
        shown.append((category, str(message)))

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        if silenced:
            with known_warnings_silenced():
                run()
        else:
            run()
    return shown


def test_runs_hide_the_listed_third_party_warnings_and_none_of_ours(
    digits_benchmark,
):
    def run():
        # real Avalanche: ReplayPlugin calls the deprecated storage_policy.update,
        # an evaluator without loggers says so
        strategy = cl_strategy("naive_replay", make_mlp(), train_epochs=1)
        strategy.train(digits_benchmark.train_stream[0])
        # qpsolvers' import-time warning (imported long ago), from its module
        warnings.warn_explicit(
            QP, UserWarning, "solvers.py", 1, module="qpsolvers.solvers"
        )
        # the same texts from this package's modules stay visible
        for category, text in (
            (UserWarning, QP),
            (DeprecationWarning, "Call to deprecated function update (x)"),
            (RuntimeWarning, "GradMix saw no buffer samples"),
        ):
            warnings.warn_explicit(
                text,
                category,
                gradmix_module.__file__,
                1,
                module=gradmix_module.__name__,
            )

    plain = _shown_during(run, silenced=False)
    texts = [text for _, text in plain]
    assert sum(t.startswith("Call to deprecated function update") for t in texts) >= 2
    assert any(t.startswith("No loggers specified") for t in texts)
    assert texts.count(QP) == 2

    silenced = _shown_during(run, silenced=True)
    assert silenced == [
        (UserWarning, QP),
        (DeprecationWarning, "Call to deprecated function update (x)"),
        (RuntimeWarning, "GradMix saw no buffer samples"),
    ]
