"""Constructor arguments of the mixing plugins: checks, keyword-only, one
implementation for Mixup and CutMix, old names that still import."""

from __future__ import annotations

import pytest
import torch

from avalanche_mixplugins import CutMixPlugin, GradMixPlugin, MixupPlugin


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alpha": 0.0}, "alpha"),
        ({"prob": 1.5}, "prob"),
        ({"weight": -1.0}, "weight"),
        ({"weight": float("nan")}, "weight"),
        ({"pairing": "buffer"}, "pairing"),
    ],
)
@pytest.mark.parametrize("cls", [MixupPlugin, CutMixPlugin, GradMixPlugin])
def test_bad_arguments_raise(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"grad_space": "middle"}, "grad_space"),
        ({"momentum": 1.0}, "momentum"),
        ({"refresh": -0.1}, "refresh"),
        ({"fallback": "any"}, "fallback"),
        ({"no_buffer": "cutmix"}, "no_buffer"),
        ({"mix": "blend"}, "mix"),
    ],
)
def test_gradmix_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GradMixPlugin(**kwargs)


def test_keyword_only():
    with pytest.raises(TypeError):
        MixupPlugin(0.4)  # type: ignore[misc]


def test_integer_images_are_refused_with_a_hint():
    from avalanche_mixplugins.mixing import mix_inputs

    with pytest.raises(ValueError, match="ToDtype"):
        mix_inputs(
            torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.arange(4), torch.ones(4)
        )


def test_mixup_and_cutmix_share_one_implementation_and_signature():
    import inspect

    from avalanche_mixplugins.plugins import RandomMixPlugin

    expected = ["alpha", "prob", "weight", "loss_form", "pairing", "asymmetric", "seed"]
    for cls, mode in ((MixupPlugin, "mixup"), (CutMixPlugin, "cutmix")):
        assert issubclass(cls, RandomMixPlugin) and cls.mix_mode == mode
        params = inspect.signature(cls).parameters.values()
        assert [p.name for p in params] == expected
        assert all(p.kind is p.KEYWORD_ONLY for p in params)
        assert cls(seed=0).mix == mode
    assert "Zhang" in MixupPlugin.__doc__ and "2018" in MixupPlugin.__doc__
    assert "Yun" in CutMixPlugin.__doc__ and "2019" in CutMixPlugin.__doc__


def test_old_names_still_import_with_a_deprecation_warning():
    from avalanche_mixplugins.plugins.base import MixingStepBatch

    with pytest.warns(DeprecationWarning, match="plugins.base.MixingStepBatch"):
        from avalanche_mixplugins.plugins.base import MixedBatch
    assert MixedBatch is MixingStepBatch


def _public_plugins():
    from avalanche_mixplugins import MixupCutMixPlugin
    from avalanche_mixplugins.plugins import MixingPlugin
    from ssl_ext import CalibrateMixPlugin

    return [
        GradMixPlugin,
        MixupPlugin,
        CutMixPlugin,
        MixupCutMixPlugin,
        CalibrateMixPlugin,
        MixingPlugin,
    ]


@pytest.mark.parametrize("cls", _public_plugins(), ids=lambda c: c.__name__)
def test_help_on_the_constructor_documents_every_argument(cls):
    """``help(Cls.__init__)`` and IDE hovers read ``__init__``'s own docstring
    (an inherited one would be Avalanche's "Inizializes an instance...")."""
    import inspect
    import pydoc

    names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    doc = inspect.getdoc(cls.__init__)
    rendered = pydoc.render_doc(cls.__init__, renderer=pydoc.plaintext)
    assert "supervised plugin" not in doc
    for name in names:
        assert f":param {name}:" in doc, name
        assert f":param {name}:" in rendered, name
