"""Helpers shared by callbacks: where a run's files go, without a collective call a rank-0-only caller would hang on."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from callbacks.common import run_dir


def refuse_broadcast(*args, **kwargs):
    raise AssertionError("run_dir must not broadcast: under DDP only rank 0 calls it")


@pytest.mark.parametrize("kind", ["csv", "none", "wandb"])
def test_run_dir_reads_the_logger_without_a_collective(kind, tmp_path, monkeypatch):
    logger = {
        "csv": lambda: CSVLogger(tmp_path, name="csv"),
        "none": lambda: False,
        "wandb": lambda: WandbLogger(save_dir=str(tmp_path), offline=True),
    }[kind]()
    trainer = L.Trainer(
        logger=logger,
        default_root_dir=tmp_path / "root",
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    monkeypatch.setattr(trainer.strategy, "broadcast", refuse_broadcast)
    expected = Path(logger.log_dir) if kind == "csv" else tmp_path / "root"
    assert run_dir(trainer) == expected
