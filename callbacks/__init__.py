"""Callbacks: what a run shows (image grids, tables), checks, and exact resume."""

from callbacks.attack_report import AttackReport
from callbacks.replica_parity import ReplicaParity
from callbacks.resume import AtomicCheckpointIO, ResumeCheckpoint
from callbacks.stability import EarlyStability
from callbacks.translation_grid import TranslationGrid
from callbacks.verification_plots import ScoreHistogram
from callbacks.victim_checkpoint import VictimCheckpoint

__all__ = [
    "AtomicCheckpointIO",
    "AttackReport",
    "EarlyStability",
    "ReplicaParity",
    "ResumeCheckpoint",
    "ScoreHistogram",
    "TranslationGrid",
    "VictimCheckpoint",
]
