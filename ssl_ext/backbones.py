"""Wide residual networks of the SSL literature, registered in timm.

WideResNet-28-k (Zagoruyko & Komodakis. "Wide Residual Networks". BMVC 2016.
https://arxiv.org/abs/1605.07146) in the variant used by FixMatch, FlexMatch,
SoftMatch and the USB benchmark for 32x32 images: pre-activation basic
blocks, leaky ReLU (slope 0.1), batch norm with momentum 0.001 and eps 0.001,
no dropout, the first group keeps the resolution and the next two halve it,
global average pooling and a linear classifier. Every block is the standard
pre-activation block (the TorchSSL/USB port feeds the *raw* input to the first
convolution and shortcut of the transition blocks of groups 2 and 3, which
leaves their first batch norm unused; the parameter count is the same).

Importing this module (or :mod:`ssl_ext`) registers ``wrn28_2`` (about 1.47M
parameters with 10 classes) and ``wrn28_8`` (about 23.4M) in timm's registry::

    import ssl_ext, timm
    model = timm.create_model("wrn28_2", num_classes=10, in_chans=1)

No pretrained weights are published for them: ``pretrained=True`` raises a
``RuntimeError`` unless a local checkpoint is given with
``pretrained_cfg_overlay={"file": "path/to/weights.pth"}``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

BN_MOMENTUM = 0.001
BN_EPS = 0.001
LEAKY_SLOPE = 0.1


class _BasicBlock(nn.Module):
    """Pre-activation basic block: BN - LReLU - conv3x3 - BN - LReLU - conv3x3.

    The shortcut is the identity, or a 1x1 convolution of the activated input
    when the width or resolution changes (Zagoruyko & Komodakis, 2016).
    """

    def __init__(
        self, in_chs: int, out_chs: int, stride: int, *, drop_rate: float = 0.0
    ):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_chs, momentum=BN_MOMENTUM, eps=BN_EPS)
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs, momentum=BN_MOMENTUM, eps=BN_EPS)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, stride=1, padding=1, bias=False)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)
        self.drop_rate = drop_rate
        self.shortcut = (
            None
            if in_chs == out_chs and stride == 1
            else nn.Conv2d(in_chs, out_chs, 1, stride=stride, padding=0, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act(self.bn1(x))
        residual = x if self.shortcut is None else self.shortcut(pre)
        out = self.act(self.bn2(self.conv1(pre)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return residual + self.conv2(out)


class WideResNet(nn.Module):
    """WideResNet for small images with timm's classifier interface.

    :param depth: total depth, ``6 n + 4`` (28 gives 4 blocks per group).
    :param widen_factor: width multiplier ``k``.
    :param num_classes: classifier outputs; 0 gives an identity head.
    :param in_chans: input channels (1 or 3, any positive integer works).
    :param drop_rate: dropout inside blocks (0 in the SSL literature).
    :param first_stride: stride of the first group (1 for 32x32 inputs).
    :param global_pool: ``"avg"`` (the only pooling implemented) or ``""``
        to return the un-pooled feature map from :meth:`forward_head`.
    """

    def __init__(
        self,
        *,
        depth: int = 28,
        widen_factor: int = 2,
        num_classes: int = 10,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        first_stride: int = 1,
        global_pool: str = "avg",
    ):
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"depth must be 6n + 4 with n >= 1, got {depth}")
        if widen_factor < 1:
            raise ValueError(f"widen_factor must be >= 1, got {widen_factor}")
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if global_pool not in ("avg", ""):
            raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.global_pool = global_pool
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, stride=1, padding=1, bias=False)
        strides = (first_stride, 2, 2)
        groups = []
        for g in range(3):
            blocks = []
            for i in range(n):
                blocks.append(
                    _BasicBlock(
                        widths[g] if i == 0 else widths[g + 1],
                        widths[g + 1],
                        strides[g] if i == 0 else 1,
                        drop_rate=drop_rate,
                    )
                )
            groups.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(widths[3], momentum=BN_MOMENTUM, eps=BN_EPS)
        self.act = nn.LeakyReLU(LEAKY_SLOPE, inplace=False)
        self.num_features = self.head_hidden_size = widths[3]
        self.fc = (
            nn.Linear(widths[3], num_classes) if num_classes > 0 else nn.Identity()
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(
                    m.weight, mode="fan_out", nonlinearity="leaky_relu"
                )
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    # timm classifier interface -------------------------------------------------
    def get_classifier(self) -> nn.Module:
        """The final linear layer (``nn.Identity`` without classes)."""
        return self.fc

    def reset_classifier(
        self, num_classes: int, global_pool: str | None = None
    ) -> None:
        """Replace the classifier with a fresh one of ``num_classes`` outputs."""
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(
                    f"global_pool must be 'avg' or '', got {global_pool!r}"
                )
            self.global_pool = global_pool
        self.num_classes = num_classes
        device = self.bn.weight.device
        if num_classes > 0:
            self.fc = nn.Linear(self.num_features, num_classes, device=device)
            nn.init.xavier_normal_(self.fc.weight)
            nn.init.zeros_(self.fc.bias)
        else:
            self.fc = nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Un-pooled features ``(N, num_features, H', W')``."""
        x = self.conv1(x)
        x = self.block3(self.block2(self.block1(x)))
        return self.act(self.bn(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool (if ``global_pool='avg'``) and classify the features."""
        if self.global_pool == "avg":
            x = x.mean(dim=(2, 3))
        if pre_logits:
            return x
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _cfg(**kwargs):
    return {
        "url": "",
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": (8, 8),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": (0.4914, 0.4822, 0.4465),
        "std": (0.2471, 0.2435, 0.2616),
        "first_conv": "conv1",
        "classifier": "fc",
        "license": "mit",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {"wrn28_2.untrained": _cfg(), "wrn28_8.untrained": _cfg()}
)


def _create_wrn(variant: str, pretrained: bool = False, **kwargs) -> WideResNet:
    overlay = kwargs.get("pretrained_cfg_overlay") or {}
    if pretrained and not (overlay.get("file") or overlay.get("state_dict")):
        raise RuntimeError(
            f"no pretrained weights are published for {variant!r}: create it with "
            "pretrained=False, or pass a local checkpoint with "
            "pretrained_cfg_overlay={'file': 'path/to/weights.pth'}"
        )
    return build_model_with_cfg(WideResNet, variant, pretrained, **kwargs)


@register_model
def wrn28_2(pretrained: bool = False, **kwargs) -> WideResNet:
    """WideResNet-28-2 (about 1.47M parameters at 10 classes), the SSL CIFAR-10 net."""
    return _create_wrn(
        "wrn28_2", pretrained, **dict(depth=28, widen_factor=2, **kwargs)
    )


@register_model
def wrn28_8(pretrained: bool = False, **kwargs) -> WideResNet:
    """WideResNet-28-8 (about 23.4M parameters at 100 classes), the SSL CIFAR-100 net."""
    return _create_wrn(
        "wrn28_8", pretrained, **dict(depth=28, widen_factor=8, **kwargs)
    )


def create_backbone(name: str, *, pretrained: bool = False, **kwargs) -> nn.Module:
    """``timm.create_model`` with errors that say what to do.

    * an unknown name raises ``ValueError`` listing the closest registered
      names (the WideResNets of this module included);
    * ``pretrained=True`` whose weights cannot be fetched (no network access,
      nothing in the Hugging Face cache) raises ``RuntimeError`` naming the
      ways out: ``pretrained=False``, local weights with
      ``pretrained_cfg_overlay={"file": ...}``, or a filled cache used with
      ``HF_HUB_OFFLINE=1``.

    :param name: a timm model name, e.g. ``"wrn28_2"`` or ``"resnet18"``.
    :param pretrained: load pretrained weights.
    :param kwargs: passed to ``timm.create_model`` (``num_classes``,
        ``in_chans``, ...).
    """
    import difflib

    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise ValueError(
            f"timm has no model named {name!r}{hint} (timm.list_models('*pattern*') "
            "lists the names)"
        )
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except (OSError, ConnectionError) as err:
        if not pretrained:
            raise
        raise RuntimeError(
            f"could not fetch the pretrained weights of {name!r} ({type(err).__name__}:"
            f" {str(err)[:200]}); without network access use pretrained=False, pass "
            "local weights with pretrained_cfg_overlay={'file': 'path/to/weights'}, or "
            "download them once into the Hugging Face cache and set HF_HUB_OFFLINE=1"
        ) from err


__all__ = ["WideResNet", "create_backbone", "wrn28_2", "wrn28_8"]
