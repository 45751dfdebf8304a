"""Mixup, CutMix and GradMix (and the calibration metrics) inside real
Avalanche strategies."""
