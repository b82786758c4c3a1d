"""Shapes and invariants of the plain networks."""

import pytest
import torch

from nets import (
    ClassifierFeatures,
    ColorJitter,
    Compose,
    Cutout,
    DigitNet,
    GaussianNoise,
    Identity,
    ImagePool,
    PatchDiscriminator,
    RandomErasing,
    ResnetGenerator,
    Rotate,
    Translate,
    init_weights,
)


@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("channels", [1, 3])
def test_generator_keeps_shape_and_range(size, channels):
    g = ResnetGenerator(channels, channels, width=8, n_blocks=2)
    y = g(torch.randn(2, channels, size, size))
    assert y.shape == (2, channels, size, size)
    assert y.abs().max() <= 1


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_discriminator_patch_map(norm):
    d = PatchDiscriminator(3, width=8, n_layers=2, norm=norm)
    assert d(torch.randn(4, 3, 32, 32)).shape == (4, 1, 6, 6)
    assert PatchDiscriminator(1, width=8, n_layers=1)(torch.randn(2, 1, 28, 28)).shape == (2, 1, 12, 12)


def test_bad_norm_is_named():
    with pytest.raises(ValueError, match="norm='group'"):
        ResnetGenerator(norm="group")


def test_classifier_features_and_logits():
    net = DigitNet(3, width=8, feature_dim=16)
    x = torch.randn(5, 3, 32, 32)
    assert net(x).shape == (5, 10)
    feats = ClassifierFeatures(net)
    assert feats(x).shape == (5, 16) and feats.num_features == 16
    feats.train()
    assert not feats.net.training and not any(p.requires_grad for p in feats.parameters())


def test_init_weights_statistics():
    g = init_weights(ResnetGenerator(width=16, n_blocks=1), std=0.02)
    conv = g.model[1]
    assert abs(conv.weight.std().item() - 0.02) < 0.005 and conv.bias is not None and conv.bias.abs().max() == 0


def test_image_pool_fills_then_mixes():
    torch.manual_seed(0)
    pool = ImagePool(4)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first) and len(pool) == 4  # filling: returned as given
    new = torch.full((64, 1, 1, 1), 9.0)
    out = pool.query(new)
    swapped = (out != 9).sum().item()
    assert 0 < swapped <= 64 and len(pool) == 4  # about half come from history
    assert set(out.flatten().tolist()) <= {0.0, 1.0, 2.0, 3.0, 9.0}
    state = pool.state_dict()
    other = ImagePool(4)
    other.load_state_dict(state)
    assert torch.equal(other.images, pool.images)
    assert torch.equal(ImagePool(0).query(new), new)


AUGMENTS = [
    Translate(),
    Rotate(),
    Cutout(),
    RandomErasing(p=1.0),
    ColorJitter(),
    GaussianNoise(),
    Compose([Translate(), Cutout()]),
]


@pytest.mark.parametrize("t", AUGMENTS, ids=lambda t: type(t).__name__)
def test_augmentations_shape_range_and_randomness(t):
    torch.manual_seed(0)
    x = torch.rand(8, 3, 32, 32) * 2 - 1
    y = t(x)
    assert y.shape == x.shape and y.min() >= -1 - 1e-5 and y.max() <= 1 + 1e-5
    assert not torch.allclose(y, x)  # it does something
    per_sample = (y - x).flatten(1).abs().sum(1)
    assert per_sample.unique().numel() > 1  # parameters drawn per sample, not once per batch


def test_identity_augment_and_zero_shift():
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    assert torch.equal(Identity()(x), x)
    assert torch.allclose(Translate(max_fraction=0.0)(x), x, atol=1e-5)
    assert torch.allclose(Rotate(max_degrees=0.0)(x), x, atol=1e-5)
