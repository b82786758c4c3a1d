"""Digit domains for translation: MNIST, MNIST-M, SVHN and a synthetic street-number domain (syn_digits).

Every loader returns ``(images uint8 [N, 3, S, S], labels int64 [N])``. MNIST and SVHN come through
torchvision (downloaded when ``download=True``); with no ``root`` MNIST is the 5,000 real test digits shipped
in ``datamodules/embedded/mnist`` (CC BY-SA 3.0, see the README there). MNIST-M is built from MNIST with the
standard recipe ``|patch - digit|`` (Ganin et al. 2016) and cached; syn_digits is rendered from fonts and cached.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from datamodules.syn_digits import render_syn_digits

DOMAINS = ("mnist", "mnist_m", "svhn", "syn_digits")
EMBEDDED_MNIST = Path(__file__).parent / "embedded" / "mnist"
SKIMAGE_PHOTOS = (
    "astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png",
    "hubble_deep_field.jpg", "retina.jpg", "grass.png", "gravel.png", "brick.png", "color.png",
)  # fmt: skip


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
    except RuntimeError as err:
        raise _missing("MNIST", root, "Set data.download=true on a machine with internet, or put the "
                       f"official files in {root}/MNIST/raw/.") from err  # fmt: skip
    return ds.data, ds.targets.long()


def torchvision_svhn(root: str | None, split: str, download: bool) -> tuple[Tensor, Tensor]:
    if root is None:
        raise _missing("SVHN", root, "SVHN has no embedded copy: set data.data_root to a folder holding "
                       "train_32x32.mat / test_32x32.mat (or data.download=true with internet). For an offline "
                       "street-number domain use the synthetic domain 'syn_digits' explicitly.")  # fmt: skip
    from torchvision.datasets import SVHN

    try:
        ds = SVHN(root, split=split, download=download)
    except RuntimeError as err:
        raise _missing(
            "SVHN", root, f"Expected {root}/{split}_32x32.mat; set data.download=true with internet."
        ) from err
    return torch.from_numpy(ds.data), torch.from_numpy(ds.labels.astype(np.int64))


def natural_photos(photos_dir: str | None) -> list[np.ndarray]:
    """RGB photos for MNIST-M backgrounds: BSDS500 (or any folder) when given, else scikit-image's shipped photos."""
    from PIL import Image

    if photos_dir is not None:
        paths = sorted(p for p in Path(photos_dir).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not paths:
            raise FileNotFoundError(f"photos_dir {photos_dir!r} holds no .jpg/.png images (expected e.g. BSDS500)")
    else:
        import skimage.data

        paths = [Path(skimage.data.__file__).parent / name for name in SKIMAGE_PHOTOS]
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def build_mnist_m(digits: Tensor, photos: list[np.ndarray], seed: int) -> Tensor:
    """MNIST-M: each digit ``[H, W]`` blended as ``|patch - digit|`` with a random crop of a random photo."""
    rng = np.random.default_rng(seed)
    n, h, w = digits.shape
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    digits_np = digits.numpy().astype(np.int16)[..., None]
    for i in range(n):
        photo = photos[rng.integers(len(photos))]
        y, x = rng.integers(photo.shape[0] - h), rng.integers(photo.shape[1] - w)
        out[i] = np.abs(photo[y : y + h, x : x + w].astype(np.int16) - digits_np[i]).astype(np.uint8)
    return torch.from_numpy(out).permute(0, 3, 1, 2)


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
    tmp = path.with_suffix(".tmp")
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
    elif name == "mnist_m":
        tag = hashlib.sha1(f"{root}|{photos_dir}".encode()).hexdigest()[:8]

        def build() -> tuple[Tensor, Tensor]:
            digits, labels = mnist()
            return build_mnist_m(digits, natural_photos(photos_dir), seed=1 if split == "train" else 2), labels

        images, labels = _cached(Path(cache_dir) / f"mnist_m-{tag}-{split}.pt", build)
    else:
        n = syn_digits_size[0 if split == "train" else 1]
        path = Path(cache_dir) / f"syn_digits-{split}-{n}.pt"
        images, labels = _cached(path, lambda: render_syn_digits(n, seed=11 if split == "train" else 12))
    return to_rgb(images, size), labels
