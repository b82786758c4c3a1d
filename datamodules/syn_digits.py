"""Synthetic street-number digits ("syn_digits"), in the spirit of SynDigits (Ganin & Lempitsky 2015).

A 32x32 RGB crop centred on one labelled digit rendered in a random font, size and colour over a textured
colour background, with partly visible neighbouring digits, a small rotation, blur and noise. It is its own
named domain: a stand-in for SVHN offline, never a silent substitute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from torch import Tensor

_FONT_NAMES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "cmr10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
)


def font_paths() -> list[Path]:
    """TrueType fonts shipped with matplotlib (a project dependency), so rendering needs no system fonts."""
    import matplotlib

    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    paths = [ttf / name for name in _FONT_NAMES if (ttf / name).is_file()]
    if not paths:
        raise FileNotFoundError(f"no TrueType fonts found in {ttf}; syn_digits needs matplotlib's bundled fonts")
    return paths


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Background and foreground colours with a luminance gap of at least 60/255."""
    while True:
        bg = rng.integers(0, 256, 3)
        fg = rng.integers(0, 256, 3)
        if abs(float(bg @ [0.299, 0.587, 0.114]) - float(fg @ [0.299, 0.587, 0.114])) > 60:
            return bg, fg


def _background(rng: np.random.Generator, size: int, bg: np.ndarray) -> Image.Image:
    ramp = np.linspace(-1, 1, size)[:, None] * rng.uniform(-30, 30, 3)
    grain = rng.normal(0, rng.uniform(2, 14), (size, size, 1))
    img = np.clip(bg + ramp[:, None, :] + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(img, "RGB")


def _render_one(rng: np.random.Generator, fonts: list[ImageFont.FreeTypeFont], label: int, size: int) -> np.ndarray:
    big = 2 * size  # render larger, rotate, then crop the centre: no empty corners
    bg, fg = _colours(rng)
    img = _background(rng, big, bg)
    draw = ImageDraw.Draw(img)
    font = fonts[rng.integers(len(fonts))]
    text = f"{rng.integers(10)}{label}{rng.integers(10)}"
    box = draw.textbbox((0, 0), text, font=font)
    mid = draw.textbbox((0, 0), text[:1], font=font)[2], draw.textbbox((0, 0), text[:2], font=font)[2]
    cx = (mid[0] + mid[1]) / 2  # centre of the labelled (middle) digit
    cy = (box[1] + box[3]) / 2
    offset = rng.normal(0, 1.0, 2)
    draw.text((big / 2 - cx + offset[0], big / 2 - cy + offset[1]), text, font=font, fill=tuple(int(c) for c in fg))
    img = img.rotate(rng.uniform(-12, 12), resample=Image.BILINEAR)
    lo = (big - size) // 2
    img = img.crop((lo, lo, lo + size, lo + size)).filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.9)))
    out = np.asarray(img).astype(np.float32) + rng.normal(0, rng.uniform(0, 8), (size, size, 3))
    return np.clip(out, 0, 255).astype(np.uint8)


def render_syn_digits(n: int, seed: int, size: int = 32) -> tuple[Tensor, Tensor]:
    """``n`` images ``uint8 [n, 3, size, size]`` and labels ``[n]``, deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    fonts = [ImageFont.truetype(str(p), int(s)) for p in font_paths() for s in np.linspace(0.6 * size, 0.95 * size, 4)]
    labels = rng.integers(0, 10, n)
    images = np.stack([_render_one(rng, fonts, int(y), size) for y in labels])
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels.astype(np.int64))
