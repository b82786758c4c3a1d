"""Shapes, invariants and argument checks of the plain networks and augmentations."""

import re

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


BAD_ARGUMENTS = [
    (ResnetGenerator, {"norm": "group"}, "norm='group' is not one of 'instance', 'batch', 'none'"),
    (ResnetGenerator, {"width": 0}, "width must be > 0, got 0"),
    (ResnetGenerator, {"in_channels": -3}, "in_channels must be > 0, got -3"),
    (ResnetGenerator, {"out_channels": 0}, "out_channels must be > 0, got 0"),
    (ResnetGenerator, {"n_blocks": -1}, "n_blocks must be >= 0, got -1"),
    (ResnetGenerator, {"n_downsampling": -1}, "n_downsampling must be >= 0, got -1"),
    (ResnetGenerator, {"dropout": 1.0}, "dropout must be in [0, 1), got 1.0"),
    (PatchDiscriminator, {"width": -8}, "width must be > 0, got -8"),
    (PatchDiscriminator, {"in_channels": 0}, "in_channels must be > 0, got 0"),
    (PatchDiscriminator, {"n_layers": -1}, "n_layers must be >= 0, got -1"),
    (PatchDiscriminator, {"norm": "layer"}, "norm='layer' is not one of 'instance', 'batch', 'none'"),
    (DigitNet, {"num_classes": 1}, "num_classes must be >= 2, got 1"),
    (DigitNet, {"feature_dim": 0}, "feature_dim must be > 0, got 0"),
    (DigitNet, {"width": 0}, "width must be > 0, got 0"),
    (DigitNet, {"dropout": -0.1}, "dropout must be in [0, 1), got -0.1"),
    (ImagePool, {"size": -1}, "size must be >= 0, got -1"),
    (init_weights, {"module": Identity(), "std": -0.02}, "std must be > 0, got -0.02"),
    (Translate, {"max_fraction": 1.5}, "max_fraction must be in [0, 1], got 1.5"),
    (Translate, {"max_fraction": -0.1}, "max_fraction must be in [0, 1], got -0.1"),
    (Translate, {"padding": "wrap"}, "padding='wrap' is not one of 'reflection', 'border', 'zeros'"),
    (Rotate, {"max_degrees": -15.0}, "max_degrees must be in [0, 180], got -15.0"),
    (Cutout, {"fraction": 2.0}, "fraction must be in [0, 1], got 2.0"),
    (Cutout, {"value": 255.0}, "value must be in [-1, 1], got 255.0"),
    (RandomErasing, {"p": 1.5}, "p must be in [0, 1], got 1.5"),
    (RandomErasing, {"p": -0.5}, "p must be in [0, 1], got -0.5"),
    (RandomErasing, {"scale": (0.5, 0.1)}, "scale must be (low, high) with 0 < low <= high <= 1.0, got (0.5, 0.1)"),
    (RandomErasing, {"scale": (0.0, 0.3)}, "scale must be (low, high) with 0 < low <= high <= 1.0, got (0.0, 0.3)"),
    (RandomErasing, {"ratio": (-1.0, 3.0)}, "ratio must be (low, high) with 0 < low <= high, got (-1.0, 3.0)"),
    (ColorJitter, {"brightness": 1.2}, "brightness must be in [0, 1], got 1.2"),
    (ColorJitter, {"contrast": -0.3}, "contrast must be in [0, 1], got -0.3"),
    (ColorJitter, {"saturation": 2.0}, "saturation must be in [0, 1], got 2.0"),
    (GaussianNoise, {"std": -0.1}, "std must be >= 0, got -0.1"),
]


@pytest.mark.parametrize(("build", "kwargs", "message"), BAD_ARGUMENTS, ids=lambda v: getattr(v, "__name__", None))
def test_bad_argument_is_named_with_its_value(build, kwargs, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        build(**kwargs)


def test_boundary_values_are_accepted():
    assert ResnetGenerator(width=1, n_downsampling=0, n_blocks=0, dropout=0.0)(torch.zeros(1, 3, 8, 8)).shape[1] == 3
    assert PatchDiscriminator(width=1, n_layers=0)(torch.zeros(1, 3, 8, 8)).shape == (1, 1, 3, 3)
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    for t in (Translate(0.0), Rotate(0.0), Cutout(0.0), RandomErasing(p=0.0), ColorJitter(0, 0, 0), GaussianNoise(0)):
        assert torch.allclose(t(x), x, atol=1e-5), type(t).__name__
    assert len(ImagePool(0).query(x)) == 2 and DigitNet(num_classes=2)(torch.zeros(1, 3, 8, 8)).shape == (1, 2)


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
    new = torch.arange(10.0, 74.0).view(64, 1, 1, 1)  # 64 distinct images
    out = pool.query(new)
    from_history = (out != new).flatten()
    # each image is swapped with probability 1/2: Binomial(64, 1/2) lies in [16, 48] but for ~1e-4 of seeds
    assert 16 <= from_history.sum() <= 48 and len(pool) == 4
    # a swap returns a stored image and stores the new one: nothing is lost or duplicated
    assert sorted([*out.flatten().tolist(), *pool.images.flatten().tolist()]) == [*range(4), *range(10, 74)]
    state = pool.state_dict()
    other = ImagePool(4)
    other.load_state_dict(state)
    assert torch.equal(other.images, pool.images)
    assert torch.equal(ImagePool(0).query(new), new)


AUGMENTS = [
    Translate(),
    Translate(integer=False),
    Rotate(),
    Cutout(),
    RandomErasing(p=1.0),
    ColorJitter(),
    GaussianNoise(),
    Compose([Translate(), Cutout()]),
]


@pytest.mark.parametrize(
    "t", AUGMENTS, ids=lambda t: type(t).__name__ + ("" if getattr(t, "integer", True) else "-subpixel")
)
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


def shifted_with_zeros(x, dy, dx):
    """``x [C, H, W]`` moved ``dy`` rows down and ``dx`` columns right, uncovered pixels 0 (roll, then blank)."""
    out = torch.roll(x, (dy, dx), dims=(-2, -1))
    h, w = x.shape[-2:]
    out[:, : max(dy, 0)] = 0
    out[:, h + min(dy, 0) :] = 0
    out[:, :, : max(dx, 0)] = 0
    out[:, :, w + min(dx, 0) :] = 0
    return out


@pytest.mark.parametrize(("size", "max_shift"), [(32, 4), (28, 3)])
def test_integer_translate_shifts_by_whole_pixels(size, max_shift):
    torch.manual_seed(0)
    x = torch.rand(100, 1, size, size) + 0.5  # > 0, so padding (0) is told apart from image pixels
    y = Translate(0.125, padding="zeros")(x)
    found = []
    for xi, yi in zip(x, y):
        near = range(-max_shift - 2, max_shift + 3)  # wider than allowed: a too-long shift would be found
        matches = [(dy, dx) for dy in near for dx in near if torch.equal(yi, shifted_with_zeros(xi, dy, dx))]
        assert len(matches) == 1  # the output is exactly the input moved by whole pixels: nothing blurred
        found.append(matches[0])
    assert {dy for dy, _ in found} == {dx for _, dx in found} == set(range(-max_shift, max_shift + 1))


def test_integer_translate_keeps_pixel_values_and_subpixel_blurs():
    torch.manual_seed(0)
    x = torch.rand(16, 3, 32, 32) * 2 - 1
    for padding in ("reflection", "border", "zeros"):
        y = Translate(padding=padding)(x)
        allowed = [torch.cat([xi.flatten(), torch.zeros(1)]) for xi in x]
        assert all(torch.isin(yi, a).all() for yi, a in zip(y, allowed)), padding  # no new values
    blurred = Translate(integer=False)(x)
    assert not all(torch.isin(yi, xi).all() for yi, xi in zip(blurred, x))  # bilinear: new values
    assert torch.equal(Translate(0.0)(x), x) and torch.equal(Translate(0.02)(x), x)  # under 1 px: no shift
