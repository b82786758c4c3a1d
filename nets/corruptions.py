"""Test-time corruptions of source images, for the robustness of translations (common-corruption style).

``Corruption(kind, severity, seed)`` maps ``[B, C, H, W]`` images in [-1, 1] to the same shape. Severity 0 is the
identity; 1-3 grow as ``SEVERITIES`` lists. Random corruptions draw from their own generator seeded by ``seed``,
``kind`` and ``severity`` (never the global RNG), so every method is tested on the very same corrupted images.
"""

from __future__ import annotations

import math
import zlib

import torch
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF

from nets.augment import _affine, _shift_whole_pixels
from nets.checks import one_of, within

# parameter per severity 1, 2, 3 (on the [-1, 1] image scale)
SEVERITIES = {
    "gaussian_noise": (0.08, 0.16, 0.32),  # noise std
    "salt_pepper": (0.02, 0.05, 0.10),  # fraction of pixels set to -1 or 1
    "shift": (1, 2, 3),  # largest whole-pixel shift per axis (border padding)
    "rotate": (5.0, 10.0, 20.0),  # rotation in degrees, random sign
    "blur": (0.5, 1.0, 1.5),  # Gaussian blur sigma (5 x 5 kernel)
    "contrast": (0.75, 0.5, 0.25),  # contrast factor around each image's mean
}
KINDS = tuple(SEVERITIES)


class Corruption(nn.Module):
    """One corruption at one severity (see the module docstring).

    Args:
        kind: one of ``KINDS``.
        severity: 0 (identity) to 3.
        seed: seed of the random draws (noise, pixel choices, shifts, angle signs).
    """

    def __init__(self, kind: str, severity: int, seed: int = 0) -> None:
        super().__init__()
        one_of("kind", kind, KINDS)
        within("severity", severity, 0, 3)
        self.kind = kind
        self.severity = int(severity)
        self.seed = seed

    def generator(self, device: torch.device) -> torch.Generator:
        key = zlib.crc32(f"{self.kind}:{self.severity}:{self.seed}".encode())
        return torch.Generator(device=device).manual_seed(key)

    def forward(self, x: Tensor) -> Tensor:
        if self.severity == 0:
            return x
        level = SEVERITIES[self.kind][self.severity - 1]
        g = self.generator(x.device)
        b = x.shape[0]
        if self.kind == "gaussian_noise":
            return (x + level * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)).clamp(-1, 1)
        if self.kind == "salt_pepper":
            u = torch.rand((b, 1, *x.shape[2:]), generator=g, device=x.device)
            salt = torch.rand((b, 1, *x.shape[2:]), generator=g, device=x.device) < 0.5
            noisy = torch.where(salt, torch.ones_like(x), -torch.ones_like(x))
            return torch.where(u < level, noisy, x)
        if self.kind == "shift":
            shifts = torch.randint(-level, level + 1, (b, 2), generator=g, device=x.device)
            return _shift_whole_pixels(x, shifts, level, "border")
        if self.kind == "rotate":
            sign = torch.randint(0, 2, (b,), generator=g, device=x.device).to(x.dtype) * 2 - 1
            angle = sign * math.radians(level)
            cos = angle.cos()
            sin = angle.sin()
            theta = torch.stack([torch.stack([cos, -sin, 0 * cos], 1), torch.stack([sin, cos, 0 * cos], 1)], 1)
            return _affine(x, theta, "border")
        if self.kind == "blur":
            return TF.gaussian_blur(x, kernel_size=[5, 5], sigma=[level, level])
        mean = x.mean((1, 2, 3), keepdim=True)  # contrast
        return mean + level * (x - mean)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, severity={self.severity}, seed={self.seed}"


__all__ = ["KINDS", "SEVERITIES", "Corruption"]
