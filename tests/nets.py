"""Small real models used across the tests."""

from __future__ import annotations

from torch import nn


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
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, 64),
        nn.ReLU(),
        nn.Linear(64, num_classes, bias=bias),
    )
