"""Batch augmentations ``T`` for consistency regularization (CR-GAN, ACCR).

Every transform maps ``[B, C, H, W]`` images in [-1, 1] to the same shape, drawing its random parameters
independently per sample (CR needs a different T(x) per image, which torchvision's batched v2 transforms
do not give: they share one draw across the batch). They are differentiable in the image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nets.checks import at_least, one_of, within

PADDINGS = ("reflection", "border", "zeros")


def _uniform(n: int, low: float, high: float, like: Tensor) -> Tensor:
    return torch.rand(n, device=like.device, dtype=like.dtype) * (high - low) + low


def _affine(x: Tensor, theta: Tensor, padding: str) -> Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


class Identity(nn.Module):
    """T(x) = x (a CR term with this T is exactly zero)."""

    def forward(self, x: Tensor) -> Tensor:
        return x


def _shift_whole_pixels(x: Tensor, shifts: Tensor, pad: int, padding: str) -> Tensor:
    """Sample ``i`` moved by ``shifts[i] = (dy, dx)`` whole pixels (``|d| <= pad``), uncovered pixels padded."""
    b, _, h, w = x.shape
    mode = {"reflection": "reflect", "border": "replicate", "zeros": "constant"}[padding]
    padded = F.pad(x, (pad, pad, pad, pad), mode=mode)
    rows = torch.arange(h, device=x.device) + pad - shifts[:, :1]  # [B, H]: output row r reads padded row r - dy
    cols = torch.arange(w, device=x.device) + pad - shifts[:, 1:]
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    return padded[batch, :, rows.view(b, h, 1), cols.view(b, 1, w)].permute(0, 3, 1, 2)  # gather gives [B, H, W, C]


class Translate(nn.Module):
    """Random shift by up to ``max_fraction`` of the image size in each axis, drawn per sample.

    By default the shift is a whole number of pixels (CR-GAN's T): every output pixel is an input pixel or padding,
    so T changes where things are and nothing else. ``integer=False`` shifts by continuous amounts with bilinear
    resampling, which also blurs: a CR term would then teach D to ignore blur, an artefact fakes show.

    Args:
        max_fraction: largest shift as a fraction of width/height, in [0, 1] (CR-GAN used 1/8: 4 px of 32).
            Whole-pixel shifts go up to ``floor(max_fraction * side)`` px (at most ``side - 1``).
        padding: how uncovered pixels are filled: ``"reflection"``, ``"border"`` (edge pixel) or ``"zeros"``.
        integer: whole-pixel shifts (default); ``False``: continuous shifts with bilinear resampling.
    """

    def __init__(self, max_fraction: float = 0.125, padding: str = "reflection", integer: bool = True) -> None:
        super().__init__()
        within("max_fraction", max_fraction, 0, 1)
        one_of("padding", padding, PADDINGS)
        self.max_fraction = max_fraction
        self.padding = padding
        self.integer = integer

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        if self.integer:
            pad = min(math.floor(self.max_fraction * min(x.shape[-2:]) + 1e-9), min(x.shape[-2:]) - 1)
            if pad == 0:
                return x
            return _shift_whole_pixels(x, torch.randint(-pad, pad + 1, (b, 2), device=x.device), pad, self.padding)
        theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = theta[:, 1, 1] = 1
        theta[:, :, 2] = _uniform(2 * b, -2 * self.max_fraction, 2 * self.max_fraction, x).view(b, 2)
        return _affine(x, theta, self.padding)


class Rotate(nn.Module):
    """Random rotation by up to ``max_degrees`` either way about the image centre.

    Args:
        max_degrees: largest rotation angle, in [0, 180].
        padding: ``grid_sample`` padding mode for uncovered pixels: ``"reflection"``, ``"border"`` or ``"zeros"``.
    """

    def __init__(self, max_degrees: float = 15.0, padding: str = "border") -> None:
        super().__init__()
        within("max_degrees", max_degrees, 0, 180)
        one_of("padding", padding, PADDINGS)
        self.max_degrees = max_degrees
        self.padding = padding

    def forward(self, x: Tensor) -> Tensor:
        angle = _uniform(x.shape[0], -self.max_degrees, self.max_degrees, x) * math.pi / 180
        cos = angle.cos()
        sin = angle.sin()
        zero = torch.zeros_like(cos)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        return _affine(x, theta, self.padding)


def _box_mask(x: Tensor, heights: Tensor, widths: Tensor) -> Tensor:
    """``[B, 1, H, W]`` boolean mask of one random box per sample (sizes in pixels)."""
    b, _, h, w = x.shape
    top = (torch.rand(b, device=x.device) * (h - heights + 1)).floor()
    left = (torch.rand(b, device=x.device) * (w - widths + 1)).floor()
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside_r = (rows >= top.view(b, 1, 1)) & (rows < (top + heights).view(b, 1, 1))
    inside_c = (cols >= left.view(b, 1, 1)) & (cols < (left + widths).view(b, 1, 1))
    return (inside_r & inside_c).unsqueeze(1)


class Cutout(nn.Module):
    """Cutout (DeVries & Taylor 2017): one square of side ``fraction`` x size set to ``value`` per sample.

    Args:
        fraction: side of the square relative to the image side, in [0, 1] (CR-GAN used 1/2 for 32 px images).
        value: fill value in image units ([-1, 1]; 0 is mid-grey).
    """

    def __init__(self, fraction: float = 0.5, value: float = 0.0) -> None:
        super().__init__()
        within("fraction", fraction, 0, 1)
        within("value", value, -1, 1)
        self.fraction = fraction
        self.value = value

    def forward(self, x: Tensor) -> Tensor:
        side = torch.full((x.shape[0],), float(round(self.fraction * x.shape[-1])), device=x.device)
        return x.masked_fill(_box_mask(x, side, side), self.value)


def _check_range(name: str, bounds: tuple[float, float], high: float) -> None:
    """``bounds = (low, up)`` with ``0 < low <= up <= high``."""
    if len(bounds) != 2 or not 0 < bounds[0] <= bounds[1] <= high:
        limit = "" if math.isinf(high) else f" <= {high}"
        raise ValueError(f"{name} must be (low, high) with 0 < low <= high{limit}, got {tuple(bounds)!r}")


class RandomErasing(nn.Module):
    """Random erasing (Zhong et al. 2020): with probability ``p`` a box of random area and aspect ratio is
    replaced by uniform noise in [-1, 1].

    Args:
        p: probability of erasing per sample, in [0, 1].
        scale: range ``(low, high)`` of the erased area as a fraction of the image, ``0 < low <= high <= 1``.
        ratio: range ``(low, high)`` of the box aspect ratio (sampled log-uniformly), ``0 < low <= high``.
    """

    def __init__(
        self, p: float = 0.5, scale: tuple[float, float] = (0.02, 0.33), ratio: tuple[float, float] = (0.3, 3.3)
    ) -> None:
        super().__init__()
        within("p", p, 0, 1)
        _check_range("scale", scale, high=1.0)
        _check_range("ratio", ratio, high=math.inf)
        self.p = p
        self.scale = scale
        self.ratio = ratio

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        area = _uniform(b, *self.scale, x).float() * h * w
        log_r = _uniform(b, math.log(self.ratio[0]), math.log(self.ratio[1]), x).float()
        heights = (area * log_r.exp()).sqrt().round().clamp(1, h)
        widths = (area / log_r.exp()).sqrt().round().clamp(1, w)
        mask = _box_mask(x, heights, widths) & (torch.rand(b, 1, 1, 1, device=x.device) < self.p)
        return torch.where(mask, torch.rand_like(x) * 2 - 1, x)


class ColorJitter(nn.Module):
    """Per-sample brightness, contrast and saturation factors drawn from ``[1 - s, 1 + s]`` (hue is left alone).

    Args:
        brightness: strength ``s`` of the brightness change, in [0, 1] (a factor stays >= 0).
        contrast: strength of the contrast change (about each image's mean grey level), in [0, 1].
        saturation: strength of the saturation change (about each pixel's grey level; no-op for 1 channel), in [0, 1].
    """

    def __init__(self, brightness: float = 0.3, contrast: float = 0.3, saturation: float = 0.3) -> None:
        super().__init__()
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            within(name, value, 0, 1)
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]

        def factor(s: float) -> Tensor:
            return _uniform(b, 1 - s, 1 + s, x).view(b, 1, 1, 1)

        img = (x + 1) / 2  # work in [0, 1] as photometric factors are defined there
        img = img * factor(self.brightness)
        grey = img.mean(dim=1, keepdim=True)
        img = grey.mean(dim=(2, 3), keepdim=True) + (img - grey.mean(dim=(2, 3), keepdim=True)) * factor(self.contrast)
        grey = img.mean(dim=1, keepdim=True)
        img = grey + (img - grey) * factor(self.saturation)
        return img.clamp(0, 1) * 2 - 1


class GaussianNoise(nn.Module):
    """Additive Gaussian noise of standard deviation ``std`` (image units), clamped back to [-1, 1].

    Args:
        std: noise standard deviation (>= 0).
    """

    def __init__(self, std: float = 0.1) -> None:
        super().__init__()
        at_least("std", std, 0)
        self.std = std

    def forward(self, x: Tensor) -> Tensor:
        return (x + self.std * torch.randn_like(x)).clamp(-1, 1)


class Compose(nn.Module):
    """Apply ``transforms`` in order.

    Args:
        transforms: the transforms, first applied first.
    """

    def __init__(self, transforms: list[nn.Module]) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def forward(self, x: Tensor) -> Tensor:
        for t in self.transforms:
            x = t(x)
        return x
