"""Digit domains for translation: MNIST, MNIST-M, SVHN, USPS and a synthetic street-number domain (syn_digits).

Every loader returns ``(images uint8 [N, 3, S, S], labels int64 [N])``. MNIST and SVHN come through
torchvision (downloaded when ``download=True``); with no ``root`` MNIST is the 5,000 real test digits shipped
in ``datamodules/embedded/mnist`` (CC BY-SA 3.0, see the README there). MNIST-M is built from MNIST with the
recipe of Ganin & Lempitsky (2015), ``|crop - digit|`` over crops of colour photos, and cached (see
``build_mnist_m``); syn_digits is rendered from fonts and cached. USPS (16 x 16, resized) is read from a folder the
user provides (``usps_root``): its distributors state no licence, so the project never ships a copy.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from datamodules.syn_digits import render_syn_digits
from nets.checks import one_of

DOMAINS = ("mnist", "mnist_m", "svhn", "usps", "syn_digits")
EMBEDDED_MNIST = Path(__file__).parent / "embedded" / "mnist"
SKIMAGE_PHOTOS = (
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "grass.png",
    "gravel.png",
    "brick.png",
    "color.png",
)  # (recipe "plain"; "ganin" adds ihc.png and keeps the colour ones)
MNIST_M_RECIPES = ("ganin", "plain")
COLOUR_MIN = 8.0  # a photo is colour when its mean channel spread (max - min over R, G, B) is >= 8 / 255
DARK_MAX = 40.0  # "ganin" rejects a crop whose mean value is below 40 / 255 (the digit would be near-black on black)
FLAT_MAX = 12.0  # ... or whose std is below 12 / 255 (no texture to hide the digit in)
USPS_FILES = {"train": ("zip.train.gz", "zip.train"), "test": ("zip.test.gz", "zip.test")}


def check_domain(name: str) -> str:
    if name not in DOMAINS:
        raise ValueError(f"unknown digit domain {name!r}; valid domains: {', '.join(DOMAINS)}")
    return name


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is not 'train' or 'test'")


def _read_idx_gz(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def embedded_mnist(split: str) -> tuple[Tensor, Tensor]:
    """The shipped 5,000 real MNIST digits: every fifth one is test (1,000), the rest train (4,000)."""
    _check_split(split)
    images = _read_idx_gz(EMBEDDED_MNIST / "t10k-first5000-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    labels = _read_idx_gz(EMBEDDED_MNIST / "t10k-first5000-labels-idx1-ubyte.gz", 8)
    keep = (np.arange(len(labels)) % 5 == 0) == (split == "test")
    return torch.from_numpy(images[keep].copy()), torch.from_numpy(labels[keep].astype(np.int64))


def _missing(name: str, root: str | None, how: str) -> FileNotFoundError:
    return FileNotFoundError(f"{name} data not found under {root!r}. {how}")


def torchvision_mnist(root: str, split: str, download: bool) -> tuple[Tensor, Tensor]:
    from torchvision.datasets import MNIST

    try:
        ds = MNIST(root, train=split == "train", download=download)
    except RuntimeError:  # our message says what torchvision's does not: which setting, which files
        raise _missing(
            "MNIST",
            root,
            f"Set data.download=true on a machine with internet, or put the official files in {root}/MNIST/raw/.",
        ) from None
    return ds.data, ds.targets.long()


def torchvision_svhn(root: str | None, split: str, download: bool) -> tuple[Tensor, Tensor]:
    if root is None:
        raise _missing(
            "SVHN",
            root,
            "SVHN has no embedded copy: set data.data_root to a folder holding "
            "train_32x32.mat / test_32x32.mat (or data.download=true with internet). For an offline "
            "street-number domain use the synthetic domain 'syn_digits' explicitly.",
        )
    from torchvision.datasets import SVHN

    try:
        ds = SVHN(root, split=split, download=download)
    except RuntimeError:
        raise _missing(
            "SVHN", root, f"Expected {root}/{split}_32x32.mat; set data.download=true with internet."
        ) from None
    return torch.from_numpy(ds.data), torch.from_numpy(ds.labels.astype(np.int64))


def is_colour(photo: np.ndarray) -> bool:
    """Whether an RGB ``[H, W, 3]`` uint8 photo is in colour (mean channel spread >= ``COLOUR_MIN``)."""
    spread = photo.max(-1).astype(np.float32) - photo.min(-1).astype(np.float32)
    return float(spread.mean()) >= COLOUR_MIN


def natural_photos(photos_dir: str | None, recipe: str = "ganin") -> list[np.ndarray]:
    """RGB photos for MNIST-M backgrounds: BSDS500 (or any folder) when given, else scikit-image's shipped photos.
    Recipe ``"ganin"`` keeps colour photos only (:func:`is_colour`); ``"plain"`` keeps every photo (and uses the
    older scikit-image list)."""
    from PIL import Image

    one_of("mnist_m_recipe", recipe, MNIST_M_RECIPES)
    if photos_dir is not None:
        paths = sorted(p for p in Path(photos_dir).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not paths:
            raise FileNotFoundError(f"photos_dir {photos_dir!r} holds no .jpg/.png images (expected e.g. BSDS500)")
    else:
        import skimage.data

        names = SKIMAGE_PHOTOS + (("ihc.png",) if recipe == "ganin" else ())
        paths = [Path(skimage.data.__file__).parent / name for name in names]
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    if recipe == "ganin":
        photos = [p for p in photos if is_colour(p)]
        if not photos:
            raise FileNotFoundError(f"photos_dir {photos_dir!r} holds no colour photos (MNIST-M needs them)")
    return photos


def acceptable_crop(crop: np.ndarray) -> bool:
    """A background crop that is neither dark (mean < ``DARK_MAX``) nor flat (std < ``FLAT_MAX``), on 0-255."""
    return float(crop.mean()) >= DARK_MAX and float(crop.std()) >= FLAT_MAX


def build_mnist_m(digits: Tensor, photos: list[np.ndarray], seed: int, recipe: str = "ganin") -> Tensor:
    """MNIST-M: each digit ``[H, W]`` blended as ``|crop - digit|`` with a random crop of a random photo.

    ``recipe="ganin"`` (Ganin & Lempitsky 2015 draw crops of colour BSDS500 photos) redraws a crop up to 100 times
    while it is dark or flat (:func:`acceptable_crop`; the thresholds are this project's, the paper gives none);
    ``"plain"`` takes every crop (the project's earlier MNIST-M, kept so old results stay reproducible)."""
    one_of("mnist_m_recipe", recipe, MNIST_M_RECIPES)
    rng = np.random.default_rng(seed)
    n, h, w = digits.shape
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    digits_np = digits.numpy().astype(np.int16)[..., None]
    for i in range(n):
        for _ in range(100 if recipe == "ganin" else 1):
            photo = photos[rng.integers(len(photos))]
            y = rng.integers(photo.shape[0] - h)
            x = rng.integers(photo.shape[1] - w)
            crop = photo[y : y + h, x : x + w]
            if recipe == "plain" or acceptable_crop(crop):
                break
        out[i] = np.abs(crop.astype(np.int16) - digits_np[i]).astype(np.uint8)
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def read_usps_text(path: Path) -> tuple[Tensor, Tensor]:
    """The text format of ``zip.train`` / ``zip.test`` (gzipped or not): per line the label, then 256 grey values in
    [-1, 1] (16 x 16, row-major, strokes +1). Returns uint8 ``[N, 16, 16]`` (strokes 255, as MNIST) and labels."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        rows = [line.split() for line in f if line.strip()]
    bad = next((i for i, r in enumerate(rows) if len(r) != 257), None)
    if bad is not None:
        raise ValueError(f"{path}: line {bad + 1} has {len(rows[bad])} values, expected a label and 256 pixels")
    values = np.asarray(rows, dtype=np.float32)
    images = np.clip(np.round((values[:, 1:] + 1) * 127.5), 0, 255).astype(np.uint8).reshape(-1, 16, 16)
    return torch.from_numpy(images), torch.from_numpy(values[:, 0].astype(np.int64))


def usps(root: str | None, split: str, download: bool) -> tuple[Tensor, Tensor]:
    """USPS from ``root``: the text files ``zip.train(.gz)`` / ``zip.test(.gz)`` when there, else torchvision's
    ``USPS`` files (``usps.bz2`` / ``usps.t.bz2``, downloaded when ``download``)."""
    how = (
        "Set data.init_args.usps_root to a folder holding zip.train.gz / zip.test.gz (label + 256 values per "
        "line) or torchvision's usps.bz2 / usps.t.bz2 (data.download=true fetches those, with internet)."
    )
    if root is None:
        raise _missing("USPS", root, "USPS has no embedded copy (its distributors state no licence). " + how)
    for name in USPS_FILES[split]:
        if (Path(root) / name).is_file():
            return read_usps_text(Path(root) / name)
    from torchvision.datasets import USPS

    try:
        ds = USPS(root, train=split == "train", download=download)
    except (RuntimeError, OSError):
        raise _missing("USPS", root, how) from None
    return torch.from_numpy(ds.data), torch.tensor(ds.targets, dtype=torch.int64)


def to_rgb(images: Tensor, size: int) -> Tensor:
    """uint8 ``[N, H, W]`` or ``[N, C, H, W]`` -> uint8 ``[N, 3, size, size]`` (bilinear, antialiased)."""
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[-1] != size or images.shape[-2] != size:
        resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        images = resized.round().clamp(0, 255).to(torch.uint8)
    return images.contiguous()


def _cached(path: Path, build) -> tuple[Tensor, Tensor]:
    if path.is_file():
        data = torch.load(path, weights_only=True)
        return data["images"], data["labels"]
    images, labels = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # one per process: parallel builders never write one file
    torch.save({"images": images, "labels": labels}, tmp)
    tmp.replace(path)  # atomic: an interrupted build never leaves a half-written cache
    return images, labels


def load_domain(
    name: str,
    split: str,
    size: int = 32,
    root: str | None = None,
    download: bool = False,
    cache_dir: str = ".cache/coadv",
    photos_dir: str | None = None,
    syn_digits_size: tuple[int, int] = (4000, 1000),
    usps_root: str | None = None,
    mnist_m_recipe: str = "ganin",
) -> tuple[Tensor, Tensor]:
    """Images and labels of one domain split; see the module docstring for sources."""
    check_domain(name)
    _check_split(split)

    def mnist() -> tuple[Tensor, Tensor]:
        return embedded_mnist(split) if root is None else torchvision_mnist(root, split, download)

    if name == "mnist":
        images, labels = mnist()
    elif name == "svhn":
        images, labels = torchvision_svhn(root, split, download)
    elif name == "usps":
        images, labels = usps(usps_root, split, download)
    elif name == "mnist_m":
        one_of("mnist_m_recipe", mnist_m_recipe, MNIST_M_RECIPES)
        key = f"{root}|{photos_dir}" + ("" if mnist_m_recipe == "plain" else f"|{mnist_m_recipe}")
        tag = hashlib.sha1(key.encode()).hexdigest()[:8]  # "plain" keeps its old cache names

        def build() -> tuple[Tensor, Tensor]:
            digits, labels = mnist()
            photos = natural_photos(photos_dir, mnist_m_recipe)
            return build_mnist_m(digits, photos, seed=1 if split == "train" else 2, recipe=mnist_m_recipe), labels

        images, labels = _cached(Path(cache_dir) / f"mnist_m-{tag}-{split}.pt", build)
    else:
        n = syn_digits_size[0 if split == "train" else 1]
        path = Path(cache_dir) / f"syn_digits-{split}-{n}.pt"
        images, labels = _cached(path, lambda: render_syn_digits(n, seed=11 if split == "train" else 12))
    return to_rgb(images, size), labels
