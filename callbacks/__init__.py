"""Callbacks: what a run shows (image grids, tables) and checks."""

from callbacks.attack_report import AttackReport
from callbacks.replica_parity import ReplicaParity
from callbacks.translation_grid import TranslationGrid
from callbacks.verification_plots import ScoreHistogram

__all__ = ["AttackReport", "ReplicaParity", "ScoreHistogram", "TranslationGrid"]
