"""Weights & Biases defaults: offline unless the user (or `wandb agent`) says otherwise."""

from __future__ import annotations

import os


def wandb_environment() -> str:
    """Set ``WANDB_MODE=offline`` only when nothing chose a mode; returns the mode in effect."""
    os.environ.setdefault("WANDB_MODE", "offline")
    return os.environ["WANDB_MODE"]
