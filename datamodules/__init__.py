"""Data on disk -> batches."""

from datamodules.librispeech import LibriSpeechDataModule
from datamodules.translation import DigitsDataModule, UnpairedDigitsDataModule
from datamodules.voxceleb import VoxCelebDataModule

__all__ = ["DigitsDataModule", "LibriSpeechDataModule", "UnpairedDigitsDataModule", "VoxCelebDataModule"]
