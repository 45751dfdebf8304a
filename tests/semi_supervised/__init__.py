"""The semi-supervised strategy, its views and backbones, the CalibrateMix
plugin."""
