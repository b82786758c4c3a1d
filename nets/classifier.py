"""Digit classifier used to judge translations (its penultimate layer also feeds FID)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from nets.checks import at_least, positive, within


class DigitNet(nn.Module):
    """Small VGG-style CNN ``[B, in_channels, H, W] -> [B, num_classes]`` logits; ``features`` gives the penultimate layer.

    Args:
        in_channels: image channels.
        num_classes: output classes (10 digits; at least 2).
        width: channels of the first conv block (two convolutions per block, doubled per block, three blocks).
        feature_dim: size of the penultimate (feature) layer.
        dropout: dropout probability before the last layer, in [0, 1).

    >>> DigitNet(3, width=8, feature_dim=16)(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self, in_channels: int = 3, num_classes: int = 10, width: int = 32, feature_dim: int = 128, dropout: float = 0.3
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("width", width), ("feature_dim", feature_dim)):
            positive(name, value)
        at_least("num_classes", num_classes, 2)
        within("dropout", dropout, 0, 1, open_high=True)
        self.config = dict(
            in_channels=in_channels, num_classes=num_classes, width=width, feature_dim=feature_dim, dropout=dropout
        )
        self.in_channels = in_channels
        self.num_features = feature_dim

        def block(cin: int, cout: int) -> list[nn.Module]:
            conv = [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(True)]
            return [*conv, nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(True), nn.MaxPool2d(2)]

        self.body = nn.Sequential(
            *block(in_channels, width),
            *block(width, 2 * width),
            *block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(2),  # keeps coarse layout (digits differ by where strokes are), any input size
            nn.Flatten(),
            nn.Linear(16 * width, feature_dim),
            nn.ReLU(True),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


class ClassifierFeatures(nn.Module):
    """Frozen penultimate features of a trained classifier, as a torchmetrics FID feature extractor.

    Takes images in [-1, 1] (the translation range) and returns ``[B, num_features]``.
    """

    def __init__(self, net: DigitNet) -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.num_features = net.num_features

    def train(self, mode: bool = True) -> ClassifierFeatures:
        return super().train(False)  # frozen: batch-norm statistics stay those of the trained classifier

    def forward(self, x: Tensor) -> Tensor:
        return self.net.features(x)


def export_digit_net(checkpoint: str | Path, out: str | Path, **provenance: str) -> dict:
    """Write the ``DigitNet`` of a DigitClassifier checkpoint to ``out``: its config and weights only (no optimizer
    states: a third of the size), with ``provenance`` (e.g. the command that trained it) beside them; the file
    loads with ``load_digit_net`` like the checkpoint and with ``torch.load(weights_only=True)``."""
    full = torch.load(checkpoint, map_location="cpu", weights_only=False)  # a checkpoint this project wrote
    if "digit_net_config" not in full:
        raise KeyError(f"{str(checkpoint)!r} is not a DigitClassifier checkpoint (no 'digit_net_config' entry)")
    state = {k: v for k, v in full["state_dict"].items() if k.startswith("net.")}
    record = {
        "digit_net_config": full["digit_net_config"],
        "state_dict": state,
        "source": str(checkpoint),
        **provenance,
    }
    torch.save(record, out)
    return record


def load_digit_net(path: str | Path) -> DigitNet:
    """Rebuild the trained ``DigitNet`` stored in a DigitClassifier checkpoint or an ``export_digit_net`` file
    (frozen, eval mode)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"digit classifier checkpoint {str(path)!r} does not exist; train it with "
            "`coadv fit -c configs/classifier/base.yaml -c configs/classifier/<domain>.yaml` (make demo does this for "
            "its domains)"
        )
    ckpt = torch.load(path, map_location="cpu", weights_only=False)  # a checkpoint this project wrote
    if "digit_net_config" not in ckpt:
        raise KeyError(f"{str(path)!r} is not a DigitClassifier checkpoint (no 'digit_net_config' entry)")
    net = DigitNet(**ckpt["digit_net_config"])
    state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(state)
    return net.eval().requires_grad_(False)
