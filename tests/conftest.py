"""Shared fixtures: W&B off, one data cache per session, tiny trained classifiers for evaluation, a tiny speech
corpus with random-weight victims for attack runs."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import lightning as L
import pytest

os.environ["WANDB_MODE"] = "disabled"
# `pytest -n 2`: one thread per worker, or the workers oversubscribe the cores
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

from helpers import ATTACK_CONFIGS, OPTIONAL_VICTIMS, QUIET, ROOT, usps_root, victim_name  # noqa: E402

from coadv import constants  # noqa: E402


@pytest.fixture(autouse=True)
def restore_environment():
    """Every test leaves os.environ as it found it: Lightning writes MASTER_ADDR / MASTER_PORT etc. into it (from
    SLURM variables too), and a later test's DDP subprocess would inherit them and wait for a node that is not there."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def cache_dir() -> str:
    """The project's own data cache: built domains are deterministic, so tests share them with runs."""
    return str(ROOT / ".cache" / "coadv")


@pytest.fixture(scope="session")
def tiny_classifiers(tmp_path_factory, cache_dir) -> dict[str, str]:
    """Briefly trained DigitClassifier checkpoints for mnist, mnist_m and syn_digits, and usps where its data are
    here (evaluation plumbing only)."""
    from datamodules import DigitsDataModule
    from lightning_modules import DigitClassifier
    from nets import DigitNet

    out = tmp_path_factory.mktemp("classifiers")
    paths = {}
    for domain in ("mnist", "mnist_m", "syn_digits", *(["usps"] if usps_root() else [])):
        L.seed_everything(0)
        model = DigitClassifier(net=DigitNet(width=8, feature_dim=16))
        dm = DigitsDataModule(domain=domain, cache_dir=cache_dir, batch_size=64, test_limit=64, usps_root=usps_root())
        trainer = L.Trainer(
            max_steps=5,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
        )
        trainer.fit(model, dm)
        paths[domain] = str(out / f"{domain}.ckpt")
        trainer.save_checkpoint(paths[domain])
    return paths


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    from datamodules.synth_speech import write_corpus

    root = tmp_path_factory.mktemp("attack_vox")
    write_corpus(root, n_speakers=8, videos=1, utts_per_video=2, seconds=(0.5, 0.8), n_trials=8, seed=3)
    return root


@pytest.fixture(scope="session")
def victim_checkpoints(tmp_path_factory, corpus) -> dict[str, Path]:
    """Every victim configs/attack names, built from its configs/speaker files as ``coadv fit`` builds it (random
    weights), validated on the corpus (which stores its EER threshold) and saved by the trainer."""
    from coadv.cli import cli_main

    out = tmp_path_factory.mktemp("victims")
    paths = {}
    for name in sorted({victim_name(c) for c in ATTACK_CONFIGS}):
        if name in OPTIONAL_VICTIMS and importlib.util.find_spec(OPTIONAL_VICTIMS[name]) is None:
            continue  # its attack configs skip (``checkpoint_for``)
        cli = cli_main(
            [
                *constants.speaker_args(name),
                f"--data.init_args.root={corpus}",
                f"--trainer.default_root_dir={out}",
                *QUIET,
            ],
            run=False,
        )
        for callback in cli.trainer.callbacks:  # a config's victim file (checkpoints/victims/...) is not ours to write
            if type(callback).__name__ == "VictimCheckpoint":
                callback.path = str(out / f"{name}_validated.ckpt")
        cli.trainer.validate(cli.model, datamodule=cli.datamodule)
        paths[name] = out / f"{name}.ckpt"
        cli.trainer.save_checkpoint(paths[name])
    return paths


@pytest.fixture()
def usps(monkeypatch) -> str:
    """USPS's folder, exported as COADV_USPS_ROOT for configs; skips where the data are absent (never shipped)."""
    root = usps_root()
    if root is None:
        pytest.skip("USPS data absent: no ../shared/data/usps beside the repository and no $COADV_USPS_ROOT")
    monkeypatch.setenv("COADV_USPS_ROOT", root)
    return root
