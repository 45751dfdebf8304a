"""Setups of the mixing plugins that cannot work as meant, found before training.

:func:`check_setup` runs in every mixing plugin's ``before_training``: two
mixing plugins in one strategy are refused (each would add its own mixed
loss), and a minibatch of one sample (Avalanche's default
``train_mb_size``) is warned about.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate


def check_setup(plugin, strategy: SupervisedTemplate) -> None:
    """Refuse or warn about a strategy the mixing ``plugin`` cannot serve.

    :raises ValueError: if another mixing plugin is in ``strategy.plugins``.
    """
    from avalanche_mixplugins.plugins.base import MixingPlugin

    plugins = getattr(strategy, "plugins", ())
    mixing = [p for p in plugins if isinstance(p, MixingPlugin)]
    if len(mixing) > 1:
        names = ", ".join(type(p).__name__ for p in mixing)
        raise ValueError(
            f"{type(strategy).__name__} has {len(mixing)} mixing plugins ({names}): "
            "each adds its own mixed loss to every step, which trains on the mixed "
            "samples twice. Keep one of them in plugins=[...]"
        )
    if getattr(strategy, "train_mb_size", None) == 1:
        warnings.warn(
            f"{type(strategy).__name__} trains with train_mb_size=1 (Avalanche's "
            f"default when it is not given): {type(plugin).__name__} pairs samples "
            "of a minibatch, and the run is hundreds of times slower. Give "
            "train_mb_size=32 (and batch_size_mem=32 for ER_ACE, ER_AML and DER)",
            RuntimeWarning,
            stacklevel=4,
        )


__all__ = ["check_setup"]
