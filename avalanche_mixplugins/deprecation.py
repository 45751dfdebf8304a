"""Old import paths kept for one release, each warning where the name lives now.

A module whose names moved (or were renamed) ends with::

    __getattr__ = moved_names(__name__, {"OldName": "new.module:NewName"})

so ``from old.module import OldName`` still works and emits a
``DeprecationWarning`` naming ``new.module.NewName``. A target without
``:NewName`` keeps the name.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any


def moved_names(module: str, targets: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) that resolves moved names with a warning.

    :param module: the old module's ``__name__``.
    :param targets: old name -> ``"new.module"`` or ``"new.module:NewName"``.
    :return: the function to assign to the old module's ``__getattr__``.
    """

    def __getattr__(name: str) -> Any:
        try:
            target = targets[name]
        except KeyError:
            raise AttributeError(
                f"module {module!r} has no attribute {name!r}"
            ) from None
        new_module, _, new_name = target.partition(":")
        new_name = new_name or name
        warnings.warn(
            f"{module}.{name} is deprecated and will be removed in the next "
            f"release; use {new_module}.{new_name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(new_module), new_name)

    return __getattr__


__all__ = ["moved_names"]
