"""Exact resume from ``avalanche_mixplugins.checkpoint``."""
