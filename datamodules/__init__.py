"""Data on disk -> batches."""

from datamodules.translation import DigitsDataModule, UnpairedDigitsDataModule

__all__ = ["DigitsDataModule", "UnpairedDigitsDataModule"]
