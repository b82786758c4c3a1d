"""Writes a verification checkpoint after ``validate``: how a pretrained victim (no training) becomes attackable."""

from __future__ import annotations

from pathlib import Path

import lightning as L

from lightning_modules.verification import TrialScoring


class VictimCheckpoint(L.Callback):
    """After validation on a trial list, save the module (weights, architecture, the clean threshold in
    ``checkpoint["verification"]``) to ``path``, the file attack configs name as ``model.init_args.checkpoint``.
    ``coadv validate -c configs/speaker/ge2e.yaml`` thus turns a pretrained encoder into an attack victim. Skipped
    under ``fast_dev_run`` (a threshold from a few trials is not the victim's).

    Args:
        path: the checkpoint file to write (folders are created).
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking or not isinstance(pl_module, TrialScoring):
            return
        if trainer.state.fn != "validate":  # during fit, ModelCheckpoint decides what is saved
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(self.path)
