"""Digit domains and DataModules on the embedded data."""

import numpy as np
import pytest
import torch

from datamodules import DigitsDataModule, UnpairedDigitsDataModule
from datamodules.digits import DOMAINS, build_mnist_m, embedded_mnist, load_domain
from datamodules.syn_digits import render_syn_digits


def test_embedded_mnist_is_the_shipped_real_digits():
    train_x, train_y = embedded_mnist("train")
    test_x, test_y = embedded_mnist("test")
    assert train_x.shape == (4000, 28, 28) and test_x.shape == (1000, 28, 28)
    counts = np.bincount(np.concatenate([train_y, test_y]), minlength=10)
    assert counts.tolist() == [460, 571, 530, 500, 500, 456, 462, 512, 489, 520]  # README's per-class counts
    assert test_y[:5].tolist() == [7, 1, 0, 5, 9]  # t10k digits 0, 5, 10, 15, 20


def test_mnist_m_recipe():
    digits = torch.zeros(3, 4, 4, dtype=torch.uint8)
    digits[:, 1:3, 1:3] = 255
    photo = np.full((10, 10, 3), 100, dtype=np.uint8)
    out = build_mnist_m(digits, [photo], seed=0)
    assert out.shape == (3, 3, 4, 4)
    assert (out[:, :, 0, 0] == 100).all() and (out[:, :, 1, 1] == 155).all()  # |patch - digit|


def test_syn_digits_deterministic_and_varied():
    x1, y1 = render_syn_digits(20, seed=3)
    x2, y2 = render_syn_digits(20, seed=3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (20, 3, 32, 32) and x1.dtype == torch.uint8
    assert len(set(y1.tolist())) > 3 and x1.float().std() > 20


@pytest.mark.parametrize("domain", ["mnist", "mnist_m", "syn_digits"])
def test_domains_load_as_rgb_32(domain, cache_dir):
    x, y = load_domain(domain, "test", cache_dir=cache_dir)
    assert x.shape[1:] == (3, 32, 32) and x.dtype == torch.uint8 and len(x) == len(y) == 1000
    assert y.min() >= 0 and y.max() <= 9


def test_unpaired_batches_are_independent_and_epoch_length_defined(cache_dir):
    dm = UnpairedDigitsDataModule("mnist", "mnist_m", cache_dir=cache_dir, batch_size=16, batches_per_epoch=5)
    dm.prepare_data()
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 5
    (xa, ya), (xb, yb) = batches[0][0]["a"], batches[0][0]["b"]
    assert xa.shape == xb.shape == (16, 3, 32, 32) and xa.min() >= -1 and xa.max() <= 1
    assert not torch.equal(ya, yb)  # mnist_m is built from the same digits: equal labels would mean paired order
    val = dm.val_dataloader()
    assert len(val) == 2 and len(val[0].dataset) == len(val[1].dataset) == 1000


def test_grey_channels_and_classifier_module(cache_dir):
    dm = DigitsDataModule("mnist", cache_dir=cache_dir, channels=1, batch_size=8)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 32, 32) and y.shape == (8,)


def test_unknown_domain_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown digit domain 'usps'; valid domains: " + ", ".join(DOMAINS)):
        UnpairedDigitsDataModule("mnist", "usps")


def test_missing_data_paths_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"MNIST data not found under '{tmp_path}'"):
        load_domain("mnist", "train", root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="SVHN has no embedded copy.*syn_digits"):
        load_domain("svhn", "train")
    with pytest.raises(FileNotFoundError, match=f"SVHN data not found under '{tmp_path}'.*test_32x32.mat"):
        load_domain("svhn", "test", root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="photos_dir .* holds no"):
        load_domain("mnist_m", "test", cache_dir=str(tmp_path), photos_dir=str(tmp_path))
