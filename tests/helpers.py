"""Helpers shared by the test modules (fixtures live in conftest.py): quiet trainers and CLI flags, the smallest
translation module, exact linear victims for attack tests, the team's USPS folder."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import yaml

from coadv import constants
from coadv.compare import configs as attack_configs

ROOT = Path(__file__).resolve().parents[1]
ATTACK_CONFIGS = attack_configs.names()  # every composed <attack>_<victim> run (coadv.compare.configs)
QUIET = [*constants.QUIET, "--trainer.logger=false"]


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


OPTIONAL_VICTIMS = {"ge2e": "resemblyzer"}  # victim -> the optional package it needs (make test-all installs it)


def merged_files(paths) -> dict:
    """Config files' plain YAML merged in order as ``-c`` after ``-c`` merges them (no defaults, no interpolation)."""
    out: dict = {}
    for path in paths:
        out = attack_configs.merge(out, yaml.safe_load(Path(path).read_text()) or {})
    return out


def victim_name(name: str) -> str:
    """The victim an attack run ``<attack>_<victim>`` names: its checkpoint's stem, also its configs/speaker run name
    (``coadv.constants.speaker_files``)."""
    return Path(attack_configs.merged(*attack_configs.split(name))["model"]["init_args"]["checkpoint"]).stem


class LinearVictim:
    """A linear scorer for exactness tests: s(enrol, x) = w^T x (the enrolment is ignored): a ``SpeakerVictim`` whose embedding is the waveform."""

    def __init__(self, w: torch.Tensor) -> None:
        self.w = w
        self.embedding_dim = len(w)

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

    for candidate in (
        os.environ.get("COADV_USPS_ROOT"),
        ROOT.parent / "shared" / "data" / "usps",
        Path.cwd().parent / "shared" / "data" / "usps",
    ):
        if candidate and (Path(candidate) / "zip.train.gz").is_file():
            return str(candidate)
    return None
