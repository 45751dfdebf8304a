"""Weak and strong augmented views of image batches, on the training device.

The SSL recipe of FixMatch (Sohn et al., NeurIPS 2020) and USB:

* **weak**: random crop of the image padded by ``padding`` pixels with
  reflection (default ``round(0.125 * size)``, i.e. 4 px at 32x32) and a
  horizontal flip with probability 0.5;
* **strong**: the weak view followed by RandAugment (Cubuk, Zoph, Shlens, Le.
  "RandAugment: Practical automated data augmentation with a reduced search
  space". CVPR-W 2020) with ``num_ops=3`` and ``magnitude=5``, as
  ``torchvision.transforms.v2.RandAugment``.

Inputs are ``(N, C, H, W)`` tensors with ``C`` in ``{1, 3}`` and any ``H, W``,
float in ``[0, 1]`` (``uint8`` is accepted and scaled by ``1/255``); outputs
are float32 on the input's device, optionally normalised by ``mean``/``std``.

Randomness is per sample. torchvision's v2 transforms draw one set of
parameters for a whole batch tensor, so crops and flips are done here as one
batched gather (per-sample offsets and flip flags, no Python loop).
RandAugment is applied by torchvision to groups of ``group_size`` samples:
each group draws its own ops and magnitudes, and samples are shuffled before
grouping, so every sample's augmentation is still a draw from RandAugment's
distribution (the expected loss is unchanged; only samples of one group are
correlated). Measured on this project's 2-core CPU machine with one intra-op
thread, for 448 images of 32x32 (one ``mu * B`` unlabeled batch of USB):
per sample (``group_size=1``) 0.11 s (1 channel) / 0.14 s (3 channels),
groups of 8: 0.02 / 0.03 s; a WRN-28-2 step on the same batch takes seconds
on CPU, so the choice hardly matters there. On a GPU (not measured: none
here) per-sample calls should be bound by kernel launches, tens of small
kernels per image, which is why the default groups 8 samples (56 independent
draws per 448 images). Use
``group_size=1`` for strictly per-sample RandAugment as in USB.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.transforms import v2


def to_float_images(x: Tensor) -> Tensor:
    """Return ``x`` as float32 images in ``[0, 1]`` (``uint8`` scaled by 1/255).

    :param x: ``(N, C, H, W)`` tensor with ``C`` in ``{1, 3}``.
    """
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] not in (1, 3):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x)
        raise ValueError(
            f"expected images of shape (N, C, H, W), C in (1, 3); got {shape}"
        )
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not x.is_floating_point():
        raise ValueError(f"expected float images in [0, 1] or uint8, got {x.dtype}")
    return x.float()


def random_crop_flip(
    x: Tensor,
    *,
    padding: int,
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-sample random crop (reflect padding) and horizontal flip, batched.

    Each sample gets its own crop offset in ``[0, 2 * padding]`` on both axes
    and, if ``flip``, is mirrored with probability 0.5. One gather, no loop.

    :param x: ``(N, C, H, W)`` float images.
    :param padding: pixels of reflection padding on each side (``>= 0``, and
        smaller than ``H`` and ``W`` as reflection requires).
    :param flip: also apply random horizontal flips.
    :param generator: optional ``torch.Generator`` on ``x.device``.
    """
    n, _, h, w = x.shape
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if padding >= min(h, w):
        raise ValueError(
            f"padding {padding} must be smaller than the image size {h}x{w}"
        )
    device = x.device
    if padding > 0:
        x = torch.nn.functional.pad(x, (padding,) * 4, mode="reflect")
    off_y = torch.randint(
        0, 2 * padding + 1, (n, 1), device=device, generator=generator
    )
    off_x = torch.randint(
        0, 2 * padding + 1, (n, 1), device=device, generator=generator
    )
    rows = off_y + torch.arange(h, device=device)  # (N, H)
    cols = torch.arange(w, device=device).expand(n, w)  # (N, W)
    if flip:
        flipped = torch.rand(n, 1, device=device, generator=generator) < 0.5
        cols = torch.where(flipped, w - 1 - cols, cols)
    cols = off_x + cols
    # gather rows then columns: (N, C, H, Wp) then (N, C, H, W)
    c = x.shape[1]
    x = torch.gather(x, 2, rows[:, None, :, None].expand(n, c, h, x.shape[3]))
    x = torch.gather(x, 3, cols[:, None, None, :].expand(n, c, h, w))
    return x


class SSLViews:
    """Weak and strong views of a batch, computed on the batch's device.

    :param padding: reflection padding of the random crop; ``None`` uses
        ``round(0.125 * min(H, W))`` (4 px at 32x32, as in USB).
    :param flip: random horizontal flips in both views (disable for digits
        if mirror images change the class; the SSL literature keeps them).
    :param num_ops: RandAugment operations per strong view (3).
    :param magnitude: RandAugment magnitude on torchvision's 0-30 scale (5).
    :param group_size: samples sharing one RandAugment draw (see the module
        docstring for the measured trade-off); 1 is strictly per sample.
    :param mean: optional per-channel mean for normalisation after augmenting.
    :param std: optional per-channel std (required with ``mean``).
    """

    def __init__(
        self,
        *,
        padding: int | None = None,
        flip: bool = True,
        num_ops: int = 3,
        magnitude: int = 5,
        group_size: int = 8,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ):
        if padding is not None and padding < 0:
            raise ValueError(f"padding must be >= 0 or None, got {padding}")
        if num_ops < 0:
            raise ValueError(f"num_ops must be >= 0, got {num_ops}")
        if not 0 <= magnitude <= 30:
            raise ValueError(f"magnitude must be in [0, 30], got {magnitude}")
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        if std is not None and any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {std}")
        self.padding = padding
        self.flip = bool(flip)
        self.num_ops = int(num_ops)
        self.magnitude = int(magnitude)
        self.group_size = int(group_size)
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(s) for s in std)
        self.randaugment = v2.RandAugment(
            num_ops=self.num_ops, magnitude=self.magnitude
        )

    def _padding(self, x: Tensor) -> int:
        if self.padding is not None:
            return self.padding
        return int(round(0.125 * min(x.shape[-2:])))

    def normalize(self, x: Tensor) -> Tensor:
        """Apply the ``mean``/``std`` normalisation (identity when unset)."""
        if self.mean is None:
            return x
        if len(self.mean) not in (1, x.shape[1]):
            raise ValueError(
                f"mean has {len(self.mean)} values for images with "
                f"{x.shape[1]} channels"
            )
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def _weak(self, x: Tensor) -> Tensor:
        return random_crop_flip(x, padding=self._padding(x), flip=self.flip)

    def _randaugment(self, x: Tensor) -> Tensor:
        if self.num_ops == 0 or x.shape[0] == 0:
            return x
        perm = torch.randperm(x.shape[0], device=x.device)
        groups = [self.randaugment(g) for g in x[perm].split(self.group_size)]
        out = torch.empty_like(x)
        out[perm] = torch.cat(groups).clamp_(0.0, 1.0)
        return out

    def weak(self, x: Tensor) -> Tensor:
        """Weak view of ``x`` (normalised if ``mean``/``std`` are set)."""
        return self.normalize(self._weak(to_float_images(x)))

    def strong(self, x: Tensor) -> Tensor:
        """Strong view of ``x``: weak crop/flip then RandAugment."""
        return self.normalize(self._randaugment(self._weak(to_float_images(x))))

    def plain(self, x: Tensor) -> Tensor:
        """No augmentation: float conversion and normalisation only (eval)."""
        return self.normalize(to_float_images(x))

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(weak, strong)`` views of the same images (independent draws)."""
        x = to_float_images(x)
        return self.normalize(self._weak(x)), self.normalize(
            self._randaugment(self._weak(x))
        )

    def __repr__(self) -> str:
        return (
            f"SSLViews(padding={self.padding}, flip={self.flip}, "
            f"num_ops={self.num_ops}, magnitude={self.magnitude}, "
            f"group_size={self.group_size}, "
            f"mean={self.mean}, std={self.std})"
        )


__all__ = ["SSLViews", "random_crop_flip", "to_float_images"]
