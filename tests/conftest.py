"""Shared fixtures: W&B off, one data cache per session, tiny trained classifiers for evaluation, a tiny speech
corpus with random-weight victims for attack runs."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

os.environ["WANDB_MODE"] = "disabled"
ROOT = Path(__file__).resolve().parents[1]
ATTACK_CONFIGS = sorted((ROOT / "configs" / "attack").glob("*.yaml"))
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.logger=false"]


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


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    from datamodules.synth_speech import write_corpus

    root = tmp_path_factory.mktemp("attack_vox")
    write_corpus(root, n_speakers=8, videos=1, utts_per_video=2, seconds=(0.5, 0.8), n_trials=8, seed=3)
    return root


OPTIONAL_VICTIMS = {"ge2e": "resemblyzer"}  # victim -> the optional package it needs (make test-all installs it)


def victim_name(config: Path) -> str:
    """The victim an attack config names: its checkpoint's stem, also the name of its configs/speaker file."""
    return Path(yaml.safe_load(config.read_text())["model"]["init_args"]["checkpoint"]).stem


@pytest.fixture(scope="session")
def victim_checkpoints(tmp_path_factory, corpus) -> dict[str, Path]:
    """Every victim configs/attack names, built from its configs/speaker file as ``coadv fit`` builds it (random
    weights), validated on the corpus (which stores its EER threshold) and saved by the trainer."""
    from coadv.cli import cli_main

    out, paths = tmp_path_factory.mktemp("victims"), {}
    for name in sorted({victim_name(c) for c in ATTACK_CONFIGS}):
        if name in OPTIONAL_VICTIMS and importlib.util.find_spec(OPTIONAL_VICTIMS[name]) is None:
            continue  # its attack configs skip (``checkpoint_for``)
        cli = cli_main(["-c", str(ROOT / "configs" / "speaker" / f"{name}.yaml"), f"--data.init_args.root={corpus}",
                        f"--trainer.default_root_dir={out}", *QUIET], run=False)  # fmt: skip
        for callback in cli.trainer.callbacks:  # a config's victim file (checkpoints/victims/...) is not ours to write
            if type(callback).__name__ == "VictimCheckpoint":
                callback.path = str(out / f"{name}_validated.ckpt")
        cli.trainer.validate(cli.model, datamodule=cli.datamodule)
        paths[name] = out / f"{name}.ckpt"
        cli.trainer.save_checkpoint(paths[name])
    return paths


class LinearVictim:
    """A linear scorer for exactness tests: s(enrol, x) = w^T x (the enrolment is ignored): a ``SpeakerVictim`` whose embedding is the waveform."""

    def __init__(self, w: torch.Tensor) -> None:
        self.w, self.embedding_dim = w, len(w)

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        assert wave.device == self.w.device, f"input on {wave.device}, victim on {self.w.device}"
        return wave

    def compare(self, enrol_embedding: torch.Tensor, test_embedding: torch.Tensor) -> torch.Tensor:
        return test_embedding @ self.w

    def score(self, enrol: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
        return self.compare(self.embed(enrol), self.embed(test))


class BatchNoisyVictim(LinearVictim):
    """A linear scorer whose batched scores move by ``noise`` per companion in the batch, as float noise does; a
    trial scored alone gets exactly ``w^T x``."""

    noise = 1e-6

    def compare(self, enrol_embedding: torch.Tensor, test_embedding: torch.Tensor) -> torch.Tensor:
        return test_embedding @ self.w + self.noise * (len(test_embedding) - 1)


def linear_case(n=4, t=64, seed=0, victim=None):
    """Trials decided correctly at threshold 0 on a linear scorer; returns (x, objective, exact minimum-norm distances)."""
    from attacks import VerificationObjective

    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(t, generator=gen)
    x = (torch.rand(n, t, generator=gen) - 0.5) * 0.2
    labels = torch.tensor([1, 0, 1, 0])[:n]
    s = x @ w
    x = x + ((0.5 + torch.rand(n, generator=gen)) * (labels * 2 - 1) - s)[:, None] * w / w.dot(w)  # decision right
    enrol = torch.arange(n, dtype=torch.float32)[:, None]
    objective = VerificationObjective(victim(w) if victim else LinearVictim(w), enrol, labels, 0.0)
    return x, objective, (x @ w).abs() / w.norm()


def usps_root() -> str | None:
    """The team's USPS folder (``../shared/data/usps`` beside the repository, or $COADV_USPS_ROOT), or None."""
    import os

    for candidate in (os.environ.get("COADV_USPS_ROOT"), ROOT.parent / "shared" / "data" / "usps",
                      Path.cwd().parent / "shared" / "data" / "usps"):  # fmt: skip
        if candidate and (Path(candidate) / "zip.train.gz").is_file():
            return str(candidate)
    return None


@pytest.fixture()
def usps(monkeypatch) -> str:
    """USPS's folder, exported as COADV_USPS_ROOT for configs; skips where the data are absent (never shipped)."""
    root = usps_root()
    if root is None:
        pytest.skip("USPS data absent: no ../shared/data/usps beside the repository and no $COADV_USPS_ROOT")
    monkeypatch.setenv("COADV_USPS_ROOT", root)
    return root
