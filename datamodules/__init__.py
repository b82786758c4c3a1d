"""Data on disk -> batches."""

from datamodules.translation import DigitsDataModule, UnpairedDigitsDataModule
from datamodules.voxceleb import VoxCelebDataModule

__all__ = ["DigitsDataModule", "UnpairedDigitsDataModule", "VoxCelebDataModule"]
