"""``avalanche_mixplugins.experiments``: datasets, streams, plots, timing."""
