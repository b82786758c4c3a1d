"""DataModules for digit translation (two unpaired domains) and for per-domain digit classifiers."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules.digits import DOMAINS, MNIST_M_RECIPES, check_domain, load_domain
from datamodules.sampling import ResumableLoader, global_batches, sharded_loader
from nets.checks import one_of

VAL_SPLIT_SEED = 0  # one fixed held-out set per training-set size, the same for every run and data.seed


class DigitDataset(Dataset):
    """``(image float [C, S, S] in [-1, 1], label)`` pairs over uint8 ``[N, 3, S, S]`` images."""

    def __init__(self, images: Tensor, labels: Tensor, channels: int) -> None:
        self.images = images
        self.labels = labels
        self.channels = channels

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Tensor) -> DigitDataset:
        return DigitDataset(self.images[indices], self.labels[indices], self.channels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x = self.images[i].float() / 127.5 - 1
        if self.channels == 1:
            x = x.mean(0, keepdim=True)
        return x, self.labels[i]


def held_out_split(n: int, val_size: int) -> tuple[Tensor, Tensor]:
    """``(train indices, validation indices)``, sorted: ``val_size`` of ``range(n)`` held out by a fixed seed.

    The split depends only on ``n``: MNIST-M is built from MNIST digit by digit, so both domains hold out the same
    digits and no validation digit is seen in training under either domain's look.
    """
    if not 1 <= val_size < n:
        raise ValueError(f"data.val_size={val_size} must be in [1, {n - 1}]: it is held out of {n} training images")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(VAL_SPLIT_SEED))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def _at_least(**checks: tuple[int, int]) -> None:
    """Raise ``ValueError`` naming the first argument whose value is below its minimum."""
    for name, (value, minimum) in checks.items():
        if value < minimum:
            raise ValueError(f"data.{name} must be >= {minimum}, got {value}")


class _DigitsBase(L.LightningDataModule):
    """Arguments shared by the digit DataModules (no I/O happens in ``__init__``).

    Validation is a fixed held-out part of each training set (``val_size`` images, the same for every run); the test
    split is read only by ``test_dataloader`` (and ``test_a`` / ``test_b`` / ``test_set`` for tools that report test
    numbers of a checkpoint chosen on validation). Training batches come from ``ShardedRandomSampler``
    (``datamodules/sampling.py``): the same images per epoch on 1 or N processes, resumable mid-epoch.

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
        batches_per_epoch: training batches per epoch summed over all processes (each of N processes runs
            ``batches_per_epoch / N``; must divide evenly); ``None``: the (larger) training set's whole batches.
        seed: seed of the training order (>= 0); epoch ``e`` of domain ``d`` draws from ``(seed, d, e)``.
        val_size: training images held out for validation (500; the embedded MNIST has 4,000 training images).
        test_limit: use only the first N test images of each domain (quick evaluation); ``None``: all.
        syn_digits_size: (train, test) sizes of the rendered syn_digits domain.
        usps_root: folder holding USPS (``zip.train.gz`` / ``zip.test.gz`` text files, or torchvision's
            ``usps.bz2`` / ``usps.t.bz2``); needed only by the ``usps`` domain (no copy ships with the project).
        mnist_m_recipe: ``"ganin"`` (colour photos, dark or flat crops redrawn; the default) or ``"plain"`` (every
            photo and crop: the project's earlier MNIST-M, cached under its old name).
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
        batches_per_epoch: int | None = None,
        seed: int = 0,
        val_size: int = 500,
        test_limit: int | None = None,
        syn_digits_size: tuple[int, int] = (4000, 1000),
        usps_root: str | None = None,
        mnist_m_recipe: str = "ganin",
    ) -> None:
        super().__init__()
        one_of("data.mnist_m_recipe", mnist_m_recipe, MNIST_M_RECIPES)
        if channels not in (1, 3):
            raise ValueError(f"data.channels={channels} is not 1 or 3")
        _at_least(
            batch_size=(batch_size, 1),
            image_size=(image_size, 8),
            num_workers=(num_workers, 0),
            seed=(seed, 0),
            val_size=(val_size, 1),
        )
        for name, value in (("batches_per_epoch", batches_per_epoch), ("test_limit", test_limit)):
            if value is not None:
                _at_least(**{name: (value, 1)})
        self.data_root = data_root
        self.download = download
        self.cache_dir = cache_dir
        self.photos_dir = photos_dir
        self.channels = channels
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.batches_per_epoch = batches_per_epoch
        self.seed = seed
        self.val_size = val_size
        self.test_limit = test_limit
        self.syn_digits_size = tuple(syn_digits_size)
        self.usps_root = usps_root
        self.mnist_m_recipe = mnist_m_recipe
        self.held_out: dict[str, tuple[Tensor, Tensor]] = {}  # domain -> (train, val) indices into its train split

    def _domains(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _load_domain(self, domain: str, split: str) -> tuple:
        """``load_domain`` with this DataModule's settings (images, labels)."""
        return load_domain(
            domain,
            split,
            self.image_size,
            self.data_root,
            self.download,
            self.cache_dir,
            self.photos_dir,
            self.syn_digits_size,
            self.usps_root,
            self.mnist_m_recipe,
        )

    def _load(self, domain: str, split: str) -> DigitDataset:
        images, labels = self._load_domain(domain, split)
        if split == "test" and self.test_limit is not None:
            images, labels = images[: self.test_limit], labels[: self.test_limit]
        return DigitDataset(images, labels, self.channels)

    def _load_train_val(self, domain: str) -> tuple[DigitDataset, DigitDataset]:
        """The domain's training split cut into (train, validation) by ``held_out_split``."""
        full = self._load(domain, "train")
        self.held_out[domain] = train, val = held_out_split(len(full), self.val_size)
        return full.subset(train), full.subset(val)

    def prepare_data(self) -> None:
        for domain in self._domains():  # downloads and builds caches once, on one process
            for split in ("train", "test"):
                self._load_domain(domain, split)

    def _train_loader(self, ds: Dataset, num_batches: int, stream: int) -> ResumableLoader:
        return sharded_loader(
            ds,
            num_batches,
            self.batch_size,
            self.seed,
            stream,
            self.trainer,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _global_batches(self, largest: int) -> int:
        world = self.trainer.world_size if self.trainer is not None else 1
        return global_batches(self.batches_per_epoch, largest, self.batch_size, world)

    def _eval_loader(self, ds: Dataset) -> DataLoader:
        # its own generator: starting an evaluation pass draws no number from the global RNG, so validating
        # does not shift training's random stream (exact resume)
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator(),
        )


class UnpairedDigitsDataModule(_DigitsBase):
    """Two unpaired digit domains for translation (CycleGAN family).

    Training batches are ``{"a": (images, labels), "b": (images, labels)}`` drawn in independent orders (streams 0
    and 1 of ``ShardedRandomSampler``; labels are never used for training). Validation gives the two held-out sets,
    test the two test sets, each as two dataloaders (index 0: domain A, 1: domain B) for translated-image accuracy.

    Args:
        domain_a: source domain, one of mnist, mnist_m, svhn, usps, syn_digits.
        domain_b: target domain, one of mnist, mnist_m, svhn, usps, syn_digits.
    """

    def __init__(self, domain_a: str = "mnist", domain_b: str = "mnist_m", **kwargs) -> None:
        super().__init__(**kwargs)
        self.domain_a = check_domain(domain_a)
        self.domain_b = check_domain(domain_b)

    def _domains(self) -> tuple[str, ...]:
        return (self.domain_a, self.domain_b)

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", "validate", None):
            self.train_a, self.val_a = self._load_train_val(self.domain_a)
            self.train_b, self.val_b = self._load_train_val(self.domain_b)
        self.test_a = self._load(self.domain_a, "test")
        self.test_b = self._load(self.domain_b, "test")

    def train_dataloader(self) -> CombinedLoader:
        n = self._global_batches(max(len(self.train_a), len(self.train_b)))
        loaders = {"a": self._train_loader(self.train_a, n, 0), "b": self._train_loader(self.train_b, n, 1)}
        return CombinedLoader(loaders, mode="min_size")

    def val_dataloader(self) -> list[DataLoader]:
        return [self._eval_loader(self.val_a), self._eval_loader(self.val_b)]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._eval_loader(self.test_a), self._eval_loader(self.test_b)]


class DigitsDataModule(_DigitsBase):
    """One labelled digit domain, for training the per-domain evaluation classifier (selected on validation).

    Args:
        domain: one of mnist, mnist_m, svhn, usps, syn_digits.
    """

    def __init__(self, domain: str = "mnist", **kwargs) -> None:
        super().__init__(**kwargs)
        self.domain = check_domain(domain)

    def _domains(self) -> tuple[str, ...]:
        return (self.domain,)

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", "validate", None):
            self.train_set, self.val_set = self._load_train_val(self.domain)
        self.test_set = self._load(self.domain, "test")

    def train_dataloader(self) -> ResumableLoader:
        return self._train_loader(self.train_set, self._global_batches(len(self.train_set)), 0)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_set)


__all__ = ["DOMAINS", "DigitDataset", "DigitsDataModule", "UnpairedDigitsDataModule", "held_out_split"]
