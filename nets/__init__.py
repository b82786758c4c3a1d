"""Plain ``nn.Module`` networks: usable without Lightning."""

from nets.augment import ColorJitter, Compose, Cutout, GaussianNoise, Identity, RandomErasing, Rotate, Translate
from nets.classifier import ClassifierFeatures, DigitNet, load_digit_net
from nets.translation import ImagePool, PatchDiscriminator, ResnetGenerator, init_weights

__all__ = [
    "ClassifierFeatures",
    "ColorJitter",
    "Compose",
    "Cutout",
    "DigitNet",
    "GaussianNoise",
    "Identity",
    "ImagePool",
    "PatchDiscriminator",
    "RandomErasing",
    "ResnetGenerator",
    "Rotate",
    "Translate",
    "init_weights",
    "load_digit_net",
]
