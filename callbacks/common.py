"""What several callbacks share: where a run's files go, and sending an image to every logger that takes one."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from torch import Tensor

SAMPLE_RATE = 16_000  # every speech file and victim in the project runs at 16 kHz


def run_dir(trainer: L.Trainer) -> Path:
    """The folder of this run's files: the logger's log_dir when it has one, else ``trainer.default_root_dir``."""
    log_dir = trainer.log_dir if trainer.loggers and not isinstance(trainer.logger, WandbLogger) else None
    return Path(log_dir or trainer.default_root_dir)


def log_image(trainer: L.Trainer, key: str, image: Tensor, step: int) -> None:
    """Send one ``[3, H, W]`` image in [0, 1] to every logger that takes images (W&B, TensorBoard)."""
    logger: Logger
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[image], step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, image, global_step=step)
