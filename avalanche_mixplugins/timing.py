"""Deprecated: ``IterationTimer`` moved to :mod:`avalanche_mixplugins.experiments.timing`.

The old name still works for one release and warns (``DeprecationWarning``)
with the new path.
"""

from avalanche_mixplugins.deprecation import moved_names

_MOVED = {"IterationTimer": "avalanche_mixplugins.experiments.timing"}

__getattr__ = moved_names(__name__, _MOVED)
__all__ = sorted(_MOVED)
