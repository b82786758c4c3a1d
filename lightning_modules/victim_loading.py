"""Rebuilding an attack's victim from its training checkpoint: architecture from the checkpoint's hyperparameters,
weights under ``victim.``, the clean EER threshold under ``checkpoint["verification"]``; every error names what a
victim file must be."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import instantiate_module
from torch import nn

from lightning_modules.hparams import INSTANTIATOR, UnreadableCheckpoint, read_checkpoint
from lightning_modules.verification import TrialScoring

EXPECTED = "expected a speaker-verification checkpoint written by `coadv fit` of its configs/speaker files"


def _not_a_victim(path: Path, reason: str) -> ValueError:
    return ValueError(f"{path}: not a coadv speaker checkpoint: {reason}; {EXPECTED} (SpeakerEmbedding, IVectorSystem)")


def read_victim_checkpoint(path: Path) -> dict[str, Any]:
    """A victim checkpoint as plain data (:func:`read_checkpoint`), its errors naming what a victim file must be."""
    try:
        return read_checkpoint(
            path,
            "victim checkpoint",
            "; train the victim first (coadv fit with its configs/speaker files: docs/guide/speaker.md)",
        )
    except UnreadableCheckpoint as error:
        raise _not_a_victim(path, error.reason.split(" (found")[0]) from None


def _victim_hparams(checkpoint: dict[str, Any], path: Path) -> dict[str, Any]:
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or hparams.get("_instantiator") != INSTANTIATOR:
        raise _not_a_victim(
            path, "it does not name its architecture (no hyper_parameters); set model.init_args.victim to it"
        )
    name = str(hparams.get("_class_path"))
    module, _, cls = name.rpartition(".")
    known = getattr(sys.modules.get(module), cls, None)  # imported modules only: a file never triggers an import
    if not (isinstance(known, type) and issubclass(known, TrialScoring)):
        raise _not_a_victim(path, f"it was written by {name}")
    return hparams


def load_victim(path: str | Path, victim: nn.Module | None = None) -> tuple[nn.Module, float | None, dict | None]:
    """The victim of a training checkpoint, its clean threshold (``None`` when missing or NaN) and the
    hyperparameters it was rebuilt from. ``victim`` overrides the architecture (its weights still come from the
    checkpoint), for checkpoints that do not name theirs."""
    path = Path(path)
    checkpoint = read_victim_checkpoint(path)
    hparams = None
    if victim is None:
        hparams = _victim_hparams(checkpoint, path)
        try:
            victim = instantiate_module(TrialScoring, {k: v for k, v in hparams.items() if k != "_instantiator"}).victim
        except Exception as error:  # jsonargparse's message names no file; its innermost cause is the useful line
            lines = [line.strip()[2:] for line in str(error).splitlines() if line.strip().startswith("- ")]
            cause = next((x for x in lines if not x.startswith(("Expected a <class", "Does not validate"))), None)
            cause = cause or str(error).strip().splitlines()[0]
            raise _not_a_victim(path, f"its hyperparameters do not build {hparams['_class_path']} ({cause})") from error
    state = {k.removeprefix("victim."): v for k, v in checkpoint["state_dict"].items() if k.startswith("victim.")}
    if not state:
        raise _not_a_victim(path, "no 'victim.*' weights in its state_dict")
    try:
        victim.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{path}: weights do not fit {type(victim).__name__} as configured: {error}") from error
    verification = checkpoint.get("verification")
    threshold = verification.get("threshold") if isinstance(verification, dict) else None
    finite = isinstance(threshold, (int, float)) and math.isfinite(threshold)
    return victim, (float(threshold) if finite else None), hparams
