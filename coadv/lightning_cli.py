"""The project's LightningCLI: Lightning's own, plus clear errors for config mistakes and bad checkpoint files."""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from coadv.errors import FriendlyErrors


class CoadvCLI(FriendlyErrors, LightningCLI):
    """LightningCLI with :class:`coadv.errors.FriendlyErrors` (root cause first, ``--ckpt_path`` checked)."""
