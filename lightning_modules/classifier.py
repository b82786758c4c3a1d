"""Per-domain digit classifier: the judge of translated images (accuracy and FID features)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_modules.acceleration import accelerate, to_channels_last
from lightning_modules.hparams import check_nets_match, restore_config, save_config
from nets.classifier import DigitNet


def _adam(params) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3)


class DigitClassifier(L.LightningModule):
    """Trains a ``DigitNet`` with cross-entropy on one domain; its checkpoint is what translation modules load.

    Args:
        net: the classifier network (default: ``DigitNet()``).
        optimizer: optimizer factory (default Adam, lr 1e-3).
        augment: optional batch augmentation during training (e.g. ``nets.Translate(integer=False)``), so the judge
            does not reward pixel-exact copies of the source layout. Sub-pixel shifts also blur, which makes the
            judge tolerant of a generator's blur (``docs/guide/translation.md``).
        channels_last: net and images in channels-last memory format (GPU tensor cores; same math).
        compile: ``torch.compile`` the net (``nn.Module.compile``: state dict and checkpoints unchanged; on CPU it
            needs a C compiler).

    Built by LightningCLI, ``DigitClassifier.load_from_checkpoint(path)`` rebuilds it, net included, from the
    checkpoint alone; built in Python with a net, pass the same net again (see ``save_config``).
    ``nets.load_digit_net(path)`` rebuilds the bare ``DigitNet`` either way.
    """

    def __init__(
        self,
        net: nn.Module | None = None,
        optimizer: OptimizerCallable = _adam,
        augment: nn.Module | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        save_config(self)
        self.net = net if net is not None else DigitNet()
        self.optimizer = optimizer
        self.augment = augment
        self.channels_last = channels_last
        self.compile_net = compile
        self._accelerated = False
        n = self.net.config["num_classes"] if isinstance(self.net, DigitNet) else 10
        self.train_acc, self.val_acc, self.test_acc = (MulticlassAccuracy(n, average="micro") for _ in range(3))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(to_channels_last(x) if self.channels_last else x)

    def configure_model(self) -> None:
        if not self._accelerated:  # called by every fit / validate / test: convert once
            accelerate([self.net], self.channels_last, self.compile_net)
            self._accelerated = True

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        if self.augment is not None:
            x = self.augment(x)
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.train_acc(logits, y)
        self.log_dict({"train/loss": loss, "train/acc": self.train_acc}, prog_bar=True)
        return loss

    def _eval(self, batch: tuple[Tensor, Tensor], stage: str, acc: MulticlassAccuracy) -> None:
        x, y = batch
        logits = self(x)
        acc(logits, y)
        self.log_dict({f"{stage}/loss": F.cross_entropy(logits, y), f"{stage}/acc": acc}, prog_bar=True)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval(batch, "val", self.val_acc)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval(batch, "test", self.test_acc)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer(self.net.parameters())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if isinstance(self.net, DigitNet):
            checkpoint["digit_net_config"] = self.net.config  # lets nets.load_digit_net rebuild it without the CLI

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        restore_config(self, checkpoint)
        check_nets_match(self, checkpoint, ("net",))
