"""Callbacks: what a run shows (image grids, tables) and checks."""

from callbacks.replica_parity import ReplicaParity
from callbacks.translation_grid import TranslationGrid

__all__ = ["ReplicaParity", "TranslationGrid"]
