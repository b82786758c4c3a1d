"""Shared fixtures: W&B off, one data cache per session, tiny trained classifiers for evaluation."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import pytest

os.environ["WANDB_MODE"] = "disabled"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cache_dir() -> str:
    """The project's own data cache: built domains are deterministic, so tests share them with runs."""
    return str(ROOT / ".cache" / "coadv")


@pytest.fixture(scope="session")
def tiny_classifiers(tmp_path_factory, cache_dir) -> dict[str, str]:
    """Briefly trained DigitClassifier checkpoints for mnist, mnist_m and syn_digits (evaluation plumbing only)."""
    from datamodules import DigitsDataModule
    from lightning_modules import DigitClassifier
    from nets import DigitNet

    out = tmp_path_factory.mktemp("classifiers")
    paths = {}
    for domain in ("mnist", "mnist_m", "syn_digits"):
        L.seed_everything(0)
        model = DigitClassifier(net=DigitNet(width=8, feature_dim=16))
        dm = DigitsDataModule(domain=domain, cache_dir=cache_dir, batch_size=64, test_limit=64)
        trainer = L.Trainer(max_steps=5, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, limit_val_batches=0)  # fmt: skip
        trainer.fit(model, dm)
        paths[domain] = str(out / f"{domain}.ckpt")
        trainer.save_checkpoint(paths[domain])
    return paths


def quiet_trainer(**kwargs) -> L.Trainer:
    defaults = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
    return L.Trainer(**{**defaults, **kwargs})


def tiny(cls, **kwargs):
    """A translation module (``CycleGAN`` family) with the smallest nets, for step-level tests."""
    from nets import PatchDiscriminator, ResnetGenerator

    nets = dict(
        g_ab=ResnetGenerator(width=8, n_blocks=1),
        g_ba=ResnetGenerator(width=8, n_blocks=1),
        d_a=PatchDiscriminator(width=8),
        d_b=PatchDiscriminator(width=8),
    )
    return cls(**nets, **kwargs)
