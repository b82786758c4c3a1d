"""DataModules for digit translation (two unpaired domains) and for per-domain digit classifiers."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler

from datamodules.digits import DOMAINS, check_domain, load_domain


class DigitDataset(Dataset):
    """``(image float [C, S, S] in [-1, 1], label)`` pairs over uint8 ``[N, 3, S, S]`` images."""

    def __init__(self, images: Tensor, labels: Tensor, channels: int) -> None:
        self.images, self.labels, self.channels = images, labels, channels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x = self.images[i].float() / 127.5 - 1
        if self.channels == 1:
            x = x.mean(0, keepdim=True)
        return x, self.labels[i]


def _at_least(**checks: tuple[int, int]) -> None:
    """Raise ``ValueError`` naming the first argument whose value is below its minimum."""
    for name, (value, minimum) in checks.items():
        if value < minimum:
            raise ValueError(f"data.{name} must be >= {minimum}, got {value}")


class _DigitsBase(L.LightningDataModule):
    """Arguments shared by the digit DataModules (no I/O happens in ``__init__``).

    Args:
        data_root: folder of the real datasets (torchvision layout). ``None``: MNIST is the embedded
            5,000 real digits, MNIST-M is built from them, SVHN is unavailable (use ``syn_digits``).
        download: let torchvision download MNIST / SVHN into ``data_root`` (needs internet).
        cache_dir: where built domains (MNIST-M, syn_digits) are cached.
        photos_dir: natural photos for MNIST-M backgrounds (e.g. BSDS500 images); ``None``: scikit-image's photos.
        channels: 3 (RGB) or 1 (grey) images out.
        image_size: side of the square images.
        batch_size: batch size per process.
        num_workers: DataLoader workers.
        test_limit: use only the first N test images of each domain (quick evaluation); ``None``: all.
        syn_digits_size: (train, test) sizes of the rendered syn_digits domain.
    """

    def __init__(
        self,
        data_root: str | None = None,
        download: bool = False,
        cache_dir: str = ".cache/coadv",
        photos_dir: str | None = None,
        channels: int = 3,
        image_size: int = 32,
        batch_size: int = 64,
        num_workers: int = 0,
        test_limit: int | None = None,
        syn_digits_size: tuple[int, int] = (4000, 1000),
    ) -> None:
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"data.channels={channels} is not 1 or 3")
        _at_least(batch_size=(batch_size, 1), image_size=(image_size, 8), num_workers=(num_workers, 0))
        if test_limit is not None:
            _at_least(test_limit=(test_limit, 1))
        self.data_root, self.download, self.cache_dir, self.photos_dir = data_root, download, cache_dir, photos_dir
        self.channels, self.image_size, self.batch_size, self.num_workers = (
            channels,
            image_size,
            batch_size,
            num_workers,
        )
        self.test_limit, self.syn_digits_size = test_limit, tuple(syn_digits_size)

    def _domains(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _load(self, domain: str, split: str) -> DigitDataset:
        images, labels = load_domain(
            domain, split, self.image_size, self.data_root, self.download, self.cache_dir, self.photos_dir,
            self.syn_digits_size,
        )  # fmt: skip
        if split == "test" and self.test_limit is not None:
            images, labels = images[: self.test_limit], labels[: self.test_limit]
        return DigitDataset(images, labels, self.channels)

    def prepare_data(self) -> None:
        for domain in self._domains():  # downloads and builds caches once, on one process
            for split in ("train", "test"):
                load_domain(
                    domain, split, self.image_size, self.data_root, self.download, self.cache_dir, self.photos_dir,
                    self.syn_digits_size,
                )  # fmt: skip

    def _loader(self, ds: Dataset, **kwargs) -> DataLoader:
        return DataLoader(ds, batch_size=self.batch_size, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, **kwargs)  # fmt: skip


class UnpairedDigitsDataModule(_DigitsBase):
    """Two unpaired digit domains for translation (CycleGAN family).

    Training batches are ``{"a": (images, labels), "b": (images, labels)}`` drawn from independently shuffled
    samplers (labels are never used for training). Validation/test give the two labelled test sets as two
    dataloaders (index 0: domain A, 1: domain B) for translated-image accuracy.

    Args:
        domain_a: source domain, one of mnist, mnist_m, svhn, syn_digits.
        domain_b: target domain, one of mnist, mnist_m, svhn, syn_digits.
        batches_per_epoch: training batches per epoch; ``None``: the larger training set / batch_size.
        seed: seed of the two training samplers.
    """

    def __init__(
        self,
        domain_a: str = "mnist",
        domain_b: str = "mnist_m",
        batches_per_epoch: int | None = None,
        seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.domain_a, self.domain_b = check_domain(domain_a), check_domain(domain_b)
        if batches_per_epoch is not None:
            _at_least(batches_per_epoch=(batches_per_epoch, 1))
        self.batches_per_epoch, self.seed = batches_per_epoch, seed

    def _domains(self) -> tuple[str, ...]:
        return (self.domain_a, self.domain_b)

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            self.train_a, self.train_b = self._load(self.domain_a, "train"), self._load(self.domain_b, "train")
        self.test_a, self.test_b = self._load(self.domain_a, "test"), self._load(self.domain_b, "test")

    def train_dataloader(self) -> CombinedLoader:
        n_batches = self.batches_per_epoch or max(len(self.train_a), len(self.train_b)) // self.batch_size
        loaders = {}
        for key, ds, offset in (("a", self.train_a, 0), ("b", self.train_b, 1)):
            gen = torch.Generator().manual_seed(self.seed * 2 + offset)
            sampler = RandomSampler(ds, num_samples=n_batches * self.batch_size, generator=gen)
            loaders[key] = self._loader(ds, sampler=sampler, drop_last=True)
        return CombinedLoader(loaders, mode="min_size")

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(self.test_a), self._loader(self.test_b)]

    def test_dataloader(self) -> list[DataLoader]:
        return self.val_dataloader()


class DigitsDataModule(_DigitsBase):
    """One labelled digit domain, for training the per-domain evaluation classifier.

    Args:
        domain: one of mnist, mnist_m, svhn, syn_digits.
    """

    def __init__(self, domain: str = "mnist", **kwargs) -> None:
        super().__init__(**kwargs)
        self.domain = check_domain(domain)

    def _domains(self) -> tuple[str, ...]:
        return (self.domain,)

    def setup(self, stage: str | None = None) -> None:
        self.train_set, self.test_set = self._load(self.domain, "train"), self._load(self.domain, "test")

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.test_set)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set)


__all__ = ["DOMAINS", "DigitDataset", "DigitsDataModule", "UnpairedDigitsDataModule"]
