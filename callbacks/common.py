"""What several callbacks share: where a run's files go, and sending an image to every logger that takes one."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from torch import Tensor

SAMPLE_RATE = 16_000  # every speech file and victim in the project runs at 16 kHz


def run_dir(trainer: L.Trainer) -> Path:
    """The folder of this run's files: the first logger's log_dir (CSV, TensorBoard) or ``default_root_dir``.

    Read from the logger itself: ``trainer.log_dir`` broadcasts, so a rank-0-only caller would hang under DDP.
    """
    logger = trainer.loggers[0] if trainer.loggers else None
    log_dir = getattr(logger, "log_dir", None) if isinstance(logger, (CSVLogger, TensorBoardLogger)) else None
    return Path(log_dir or trainer.default_root_dir)


def log_image(trainer: L.Trainer, key: str, image: Tensor, step: int) -> None:
    """Send one ``[3, H, W]`` image in [0, 1] to every logger that takes images (W&B, TensorBoard)."""
    logger: Logger
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[image], step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, image, global_step=step)
