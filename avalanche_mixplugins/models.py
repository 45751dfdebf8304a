"""Backbones for the examples and benchmarks.

``make_model(name, num_classes=..., in_chans=...)`` resolves ``"small_cnn"``
(this module's :class:`SmallCNN`, for 28x28 and smaller images) or any timm
model name (``timm.create_model``, e.g. ``"resnet18"`` for 32x32 and larger).
"""

from __future__ import annotations

import difflib

import timm
from torch import nn


class SmallCNN(nn.Module):
    """Two conv blocks and a linear head ``fc`` (about 6k parameters at width 16).

    :param num_classes: outputs of the head.
    :param in_chans: image channels.
    :param width: channels of the first block (the second has twice as many).
    """

    def __init__(self, *, num_classes: int = 10, in_chans: int = 1, width: int = 16):
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )
        self.num_features = 8 * width
        self.fc = nn.Linear(self.num_features, num_classes)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward(self, x):
        return self.fc(self.features(x))


def make_model(name: str, *, num_classes: int, in_chans: int = 1) -> nn.Module:
    """Build ``"small_cnn"`` or a timm model with a fresh head.

    :raise ValueError: for an unknown name, listing close timm names.
    """
    if name == "small_cnn":
        return SmallCNN(num_classes=num_classes, in_chans=in_chans)
    if name not in timm.list_models():
        close = difflib.get_close_matches(name, ["small_cnn", *timm.list_models()], n=5)
        raise ValueError(f"unknown model {name!r}; close matches: {close or 'none'}")
    return timm.create_model(
        name, pretrained=False, num_classes=num_classes, in_chans=in_chans
    )


__all__ = ["SmallCNN", "make_model"]
