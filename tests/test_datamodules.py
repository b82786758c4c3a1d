"""Digit domains and DataModules on the embedded data."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import DigitsDataModule, UnpairedDigitsDataModule
from datamodules.digits import DOMAINS, build_mnist_m, embedded_mnist, load_domain
from datamodules.sampling import ShardedRandomSampler, global_batches, sharded_loader
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
    (xa, ya) = batches[0][0]["a"]
    (xb, yb) = batches[0][0]["b"]
    assert xa.shape == xb.shape == (16, 3, 32, 32) and xa.min() >= -1 and xa.max() <= 1
    assert not torch.equal(ya, yb)  # mnist_m is built from the same digits: equal labels would mean paired order
    val = dm.val_dataloader()
    test = dm.test_dataloader()
    assert len(val) == 2 and len(val[0].dataset) == len(val[1].dataset) == 500  # held out of the 4,000 train images
    assert len(test) == 2 and len(test[0].dataset) == len(test[1].dataset) == 1000


def _keys(images: torch.Tensor) -> set[bytes]:
    return {x.numpy().tobytes() for x in images}


def test_validation_is_a_fixed_held_out_part_of_train_and_never_test(cache_dir):
    dm = UnpairedDigitsDataModule("mnist", "mnist_m", cache_dir=cache_dir, val_size=300, seed=7)
    dm.setup("fit")
    full = load_domain("mnist", "train", cache_dir=cache_dir)[0]
    train, val = dm.held_out["mnist"]
    assert len(val) == 300 and len(train) == len(full) - 300
    assert not set(train.tolist()) & set(val.tolist()) and set(train.tolist()) | set(val.tolist()) == set(range(4000))
    assert torch.equal(dm.held_out["mnist_m"][1], val)  # MNIST-M is built from the same digits: same ones held out
    assert torch.equal(dm.val_a.images, full[val]) and torch.equal(dm.train_a.images, full[train])
    test = _keys(load_domain("mnist", "test", cache_dir=cache_dir)[0])
    assert not _keys(dm.val_a.images) & _keys(dm.train_a.images) and not _keys(dm.val_a.images) & test
    assert [loader.dataset for loader in dm.test_dataloader()] == [dm.test_a, dm.test_b]
    classifier = DigitsDataModule("mnist", cache_dir=cache_dir, val_size=300, seed=3, test_limit=10)
    classifier.setup("fit")
    assert torch.equal(classifier.held_out["mnist"][1], val)  # fixed: the classifiers' validation digits too
    assert classifier.val_dataloader().dataset is classifier.val_set and len(classifier.test_dataloader().dataset) == 10


def test_bad_split_and_epoch_sizes_are_named(cache_dir):
    dm = DigitsDataModule("mnist", cache_dir=cache_dir, val_size=4000)
    with pytest.raises(ValueError, match=r"data.val_size=4000 must be in \[1, 3999\]"):
        dm.setup("fit")
    with pytest.raises(ValueError, match="data.batches_per_epoch=5 .* divisible by the 2 processes"):
        global_batches(5, 100, 4, world_size=2)
    assert global_batches(None, 100, 4, world_size=3) == 24  # 25 whole batches, 8 per process


def test_sharded_sampler_deals_one_draw_to_the_ranks():
    data = list(range(10))
    one = list(ShardedRandomSampler(data, num_batches=6, batch_size=4, seed=5))
    ranks = [list(ShardedRandomSampler(data, 6, 4, seed=5, num_replicas=2, rank=r)) for r in (0, 1)]
    batches = [one[i : i + 4] for i in range(0, 24, 4)]
    assert ranks == [sum(batches[0::2], []), sum(batches[1::2], [])]  # global batch j on rank j % 2
    assert one != list(ShardedRandomSampler(data, 6, 4, seed=5, stream=1))  # domain B: another order
    later = ShardedRandomSampler(data, 6, 4, seed=5)
    later.set_epoch(1)
    assert one != list(later) and sorted(one[:10]) == data  # a new order each epoch; each pass a permutation


def test_resumable_loader_continues_at_the_next_batch():
    data = torch.arange(40)
    full = [b.tolist() for b in sharded_loader(data, 8, 4, seed=1, stream=0)]
    first = sharded_loader(data, 8, 4, seed=1, stream=0)
    first.sampler.set_epoch(0)
    it = iter(first)
    head = [next(it).tolist() for _ in range(3)]
    state = first.state_dict()
    assert head == full[:3] and state == {"epoch": 0, "batches": 3, "num_replicas": 1}
    resumed = sharded_loader(data, 8, 4, seed=1, stream=0)
    resumed.load_state_dict(state)
    assert [b.tolist() for b in resumed] == full[3:] and resumed.state_dict()["batches"] == 8
    assert [b.tolist() for b in resumed] == full  # the next pass is a whole epoch again


def test_grey_channels_and_classifier_module(cache_dir):
    dm = DigitsDataModule("mnist", cache_dir=cache_dir, channels=1, batch_size=8)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 32, 32) and y.shape == (8,)


def test_unknown_domain_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown digit domain 'kmnist'; valid domains: " + ", ".join(DOMAINS)):
        UnpairedDigitsDataModule("mnist", "kmnist")


def test_missing_data_paths_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"MNIST data not found under '{tmp_path}'"):
        load_domain("mnist", "train", root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="SVHN has no embedded copy.*syn_digits"):
        load_domain("svhn", "train")
    with pytest.raises(FileNotFoundError, match=f"SVHN data not found under '{tmp_path}'.*test_32x32.mat"):
        load_domain("svhn", "test", root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="photos_dir .* holds no"):
        load_domain("mnist_m", "test", cache_dir=str(tmp_path), photos_dir=str(tmp_path))


def test_usps_text_reader_on_the_real_files(usps, cache_dir):
    from datamodules.digits import read_usps_text

    raw, labels = read_usps_text(Path(usps) / "zip.test.gz")
    assert raw.shape == (1000, 16, 16) and raw.dtype == torch.uint8 and len(labels) == 1000
    first = gzip.open(Path(usps) / "zip.test.gz", "rt").readline().split()
    assert int(float(first[0])) == labels[0]
    assert raw[0].flatten()[:3].tolist() == [round((float(v) + 1) * 127.5) for v in first[1:4]]
    assert raw.float().mean() < 80  # strokes bright on a dark ground, as MNIST
    x, y = load_domain("usps", "train", usps_root=usps, cache_dir=cache_dir)
    assert x.shape == (7291, 3, 32, 32) and set(y.tolist()) == set(range(10))
    dm = UnpairedDigitsDataModule("mnist", "usps", usps_root=usps, cache_dir=cache_dir, batch_size=4)
    dm.setup("fit")
    assert len(dm.train_b) == 7291 - 500 and len(dm.test_b) == 1000


def test_usps_errors_name_the_setting_and_the_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="USPS has no embedded copy.*data.init_args.usps_root"):
        load_domain("usps", "train")
    with pytest.raises(FileNotFoundError, match=f"USPS data not found under '{tmp_path}'"):
        load_domain("usps", "test", usps_root=str(tmp_path))
    (tmp_path / "zip.test").write_text("3 " + " ".join(["-1"] * 256) + "\n4 0.5\n")
    with pytest.raises(ValueError, match=r"zip.test: line 2 has 2 values, expected a label and 256 pixels"):
        load_domain("usps", "test", usps_root=str(tmp_path))


def test_mnist_m_ganin_recipe_keeps_colour_photos_and_rejects_dark_or_flat_crops(cache_dir):
    from datamodules.digits import acceptable_crop, build_mnist_m, is_colour, natural_photos

    grey = np.repeat(np.random.default_rng(0).integers(0, 255, (64, 64, 1), dtype=np.uint8), 3, -1)
    assert not is_colour(grey) and all(is_colour(p) for p in natural_photos(None, "ganin"))
    assert len(natural_photos(None, "plain")) == 12  # the earlier MNIST-M's photos, greyscale ones included
    assert not acceptable_crop(np.full((28, 28, 3), 20, np.uint8))  # dark
    assert not acceptable_crop(np.full((28, 28, 3), 200, np.uint8))  # flat
    dark = np.zeros((100, 100, 3), np.uint8)
    bright = np.random.default_rng(1).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    digits = torch.zeros(50, 28, 28, dtype=torch.uint8)
    out = build_mnist_m(digits, [dark, bright], seed=0)  # blank digits: the output is the crop itself
    assert (out.float().mean((1, 2, 3)) > 40).all()  # every dark crop was redrawn
    plain = build_mnist_m(digits, [dark, bright], seed=0, recipe="plain")
    assert (plain.float().mean((1, 2, 3)) == 0).any()
    x, _ = load_domain("mnist_m", "test", cache_dir=cache_dir)
    backgrounds = x.float().mean((1, 2, 3))
    assert (backgrounds < 30).float().mean() < 0.02  # dark images were 14 % of the earlier MNIST-M
