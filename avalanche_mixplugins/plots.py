"""Deprecated: the figures moved to :mod:`avalanche_mixplugins.experiments.plots`.

The old names still work for one release and warn (``DeprecationWarning``)
with the new path.
"""

from avalanche_mixplugins.deprecation import moved_names
from avalanche_mixplugins.experiments import plots as _plots

_MOVED = dict.fromkeys(_plots.__all__, "avalanche_mixplugins.experiments.plots")

__getattr__ = moved_names(__name__, _MOVED)
__all__ = sorted(_MOVED)
