"""Opt-in W&B artifact of an attack run: the adversarial audio with its per-trial table and summary."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from callbacks.common import run_dir

KINDS = ("trials.csv", "summary.json")  # besides every file under attack/adversarial/


def attack_files(folder: Path, since: float) -> list[Path]:
    """Files of ``folder`` (a run's ``attack/``) written at or after ``since`` (seconds since the epoch).

    Older ones belong to an earlier run in the same folder (e.g. one with more trials) and stay out.
    """
    candidates = [*sorted((folder / "adversarial").glob("*")), *(folder / name for name in KINDS)]
    return [p for p in candidates if p.is_file() and p.stat().st_mtime >= since]


def _metadata(folder: Path) -> dict:
    path = folder / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    # W&B metadata is JSON: a NaN (e.g. no successful trial) would be rejected
    return {k: v for k, v in summary.items() if not (isinstance(v, float) and not math.isfinite(v))}


class WandbArtifacts(L.Callback):
    """Uploads what an attack run wrote as one W&B artifact; does nothing unless switched on or without W&B.

    After ``test`` / ``predict``, artifact ``adversarial-<run id>`` of type ``adversarial-audio`` holds the files
    this run wrote under ``<run dir>/attack/`` (``callbacks.AttackReport``): ``adversarial/*.wav`` (``.pt``
    feature frames for feature-domain attacks), ``trials.csv`` and ``summary.json``; the summary is also its
    metadata. Offline runs keep the artifact until ``wandb sync``. Checkpoints are Lightning's own switch,
    ``trainer.logger.init_args.log_model``. Set in a config as ``wandb_artifacts: {audio: true}``.

    Args:
        audio: upload the adversarial audio artifact (off by default: a full trial list is many megabytes).
    """

    def __init__(self, audio: bool = False) -> None:
        self.audio = audio
        self.started = math.inf

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # file times have coarse resolution on some filesystems: one second of slack
        self.started = time.time() - 1.0

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self.audio or stage not in ("test", "predict") or not trainer.is_global_zero:
            return
        folder = run_dir(trainer) / "attack"
        files = attack_files(folder, self.started)
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not files or not loggers:
            return
        import wandb

        for logger in loggers:
            run = logger.experiment
            if run.settings.mode == "disabled":
                continue
            artifact = wandb.Artifact(f"adversarial-{run.id}", type="adversarial-audio", metadata=_metadata(folder))
            for path in files:
                artifact.add_file(str(path), name=path.relative_to(folder).as_posix())
            run.log_artifact(artifact)
