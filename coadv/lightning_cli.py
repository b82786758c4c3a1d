"""The project's LightningCLI: Lightning's own, plus W&B runs as users expect and clear errors for mistakes."""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from coadv.errors import FriendlyErrors
from coadv.tracking import WandbTracking


class CoadvCLI(WandbTracking, FriendlyErrors, LightningCLI):
    """LightningCLI with :class:`coadv.tracking.WandbTracking` (one named W&B run per training, resolved config,
    opt-in artifacts) and :class:`coadv.errors.FriendlyErrors` (root cause first, ``--ckpt_path`` checked)."""
