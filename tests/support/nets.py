"""Small real models used across the tests."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parameters_to_vector


class PlainConvNet(nn.Module):
    """Two convolutions without batch norm and a linear head ``fc`` (bias optional).

    Unlike :class:`avalanche_mixplugins.models.SmallCNN` it has no batch
    norm, so per-sample gradients (``torch.func``) need no running
    statistics, and ``bias=False`` gives a head without bias.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1, bias: bool = True):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )
        self.fc = nn.Linear(64, num_classes, bias=bias)

    def forward(self, x):
        return self.fc(self.features(x))


def make_mlp(
    num_classes: int = 10, in_features: int = 64, bias: bool = True
) -> nn.Module:
    """Flatten, one hidden layer of 64, a linear head (``model[:3]`` is the body)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, 64),
        nn.ReLU(),
        nn.Linear(64, num_classes, bias=bias),
    )


def two_conv_cnn(*, num_classes: int = 10, batch_norm: bool = True) -> nn.Module:
    """Two convolutions (8 and 16 channels), global pooling, a linear head
    (``model[-1]``). Without batch norm a NaN input stays in its own row."""
    norm = [nn.BatchNorm2d(8)] if batch_norm else []
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        *norm,
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )


def three_block_cnn(
    *, in_chans: int = 1, num_classes: int = 10, width: int = 8
) -> nn.Module:
    """Three conv-BN-ReLU-pool blocks (``width``, 2x, 4x channels), global
    pooling, a linear head."""

    def block(i, o):
        return nn.Sequential(
            nn.Conv2d(i, o, 3, padding=1, bias=False),
            nn.BatchNorm2d(o),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )

    return nn.Sequential(
        block(in_chans, width),
        block(width, 2 * width),
        block(2 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, num_classes),
    )


def flat_params(model: nn.Module) -> torch.Tensor:
    """Every parameter of ``model`` in one detached vector."""
    return parameters_to_vector(model.parameters()).detach()
