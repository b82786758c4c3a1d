"""Callbacks: what a run shows (image grids, tables) and checks."""

from callbacks.translation_grid import TranslationGrid

__all__ = ["TranslationGrid"]
