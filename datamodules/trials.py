"""VoxCeleb-style trial lists and file lists: ``label path1 path2`` trials (paths relative to ``root/wav``), the
identification split (``set path``, 1 = train), speakers from ``<speaker>/<video>/<utt>`` paths, the trials as a
dataset of padded waveform pairs and a fixed-order sampler."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from datamodules.audio import AUDIO_SUFFIXES, read_wave


@dataclass(frozen=True)
class Trial:
    label: int
    enrol: str
    test: str
    line: int


def read_trials(path: Path, wav_root: Path, skip_missing: bool = False) -> list[Trial]:
    """Parse a ``label path1 path2`` trial list; malformed lines and missing files are errors naming file and line."""
    if not path.is_file():
        raise FileNotFoundError(f"trial list {path} does not exist (VoxCeleb1: download veri_test.txt next to wav/)")
    trials = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        parts = raw.split()
        if not parts:
            raise ValueError(f"{path}, line {number}: empty trial line")
        if len(parts) != 3 or parts[0] not in ("0", "1"):
            raise ValueError(f"{path}, line {number}: expected 'label path1 path2' with label 0 or 1, got {raw!r}")
        missing = [p for p in parts[1:] if not (wav_root / p).is_file()]
        if missing:
            if skip_missing:
                continue
            raise FileNotFoundError(f"{path}, line {number}: {', '.join(str(wav_root / p) for p in missing)} not found")
        trials.append(Trial(int(parts[0]), parts[1], parts[2], number))
    if not trials:
        raise ValueError(f"{path}: no usable trials")
    return trials


def index_trials(trials: list[Trial]) -> tuple[list[str], Tensor, Tensor]:
    """Distinct utterances (sorted), trial pairs ``[N, 2]`` of indices into them, labels ``[N]``: what an
    evaluation that embeds each utterance once needs."""
    utterances = sorted({p for t in trials for p in (t.enrol, t.test)})
    position = {u: i for i, u in enumerate(utterances)}
    pairs = torch.tensor([[position[t.enrol], position[t.test]] for t in trials], dtype=torch.long).reshape(-1, 2)
    return utterances, pairs, torch.tensor([t.label for t in trials], dtype=torch.long)


def speaker_of(relative: str) -> str:
    return relative.split("/")[0]


def read_iden_split(path: Path, wav_root: Path, subset: int = 1) -> list[str]:
    """Relative paths of subset ``subset`` (1 train, 2 val, 3 test) of VoxCeleb1's ``iden_split.txt``."""
    if not path.is_file():
        raise FileNotFoundError(f"identification split {path} does not exist (VoxCeleb1: iden_split.txt)")
    files = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        parts = raw.split()
        if len(parts) != 2 or parts[0] not in ("1", "2", "3"):
            raise ValueError(f"{path}, line {number}: expected 'set path' with set 1, 2 or 3, got {raw!r}")
        if int(parts[0]) == subset:
            if not (wav_root / parts[1]).is_file():
                raise FileNotFoundError(f"{path}, line {number}: {wav_root / parts[1]} not found")
            files.append(parts[1])
    return files


def list_training_files(wav_root: Path) -> list[str]:
    """Relative paths of every wav / flac under ``wav_root/<speaker>/<session>/`` (sorted, deterministic)."""
    if not wav_root.is_dir():
        raise FileNotFoundError(f"{wav_root} does not exist: expected VoxCeleb1's wav/<speaker>/<video>/<utt>.wav")
    return sorted(
        p.relative_to(wav_root).as_posix() for p in wav_root.glob("*/*/*") if p.suffix.lower() in AUDIO_SUFFIXES
    )


class TrialDataset(Dataset):
    """``(enrol wave, test wave, label, index)`` per trial, each cut to ``max_samples`` (``None``: full length); the
    index into the trial list survives distributed sharding."""

    def __init__(
        self, wav_root: Path, trials: list[Trial], max_samples: int | None, preprocess: str | None = None
    ) -> None:
        self.wav_root = wav_root
        self.trials = trials
        self.max_samples = max_samples
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.trials)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, int, int]:
        t = self.trials[i]
        return (
            read_wave(self.wav_root / t.enrol, self.max_samples, self.preprocess),
            read_wave(self.wav_root / t.test, self.max_samples, self.preprocess),
            t.label,
            i,
        )


class InOrder(Sampler[int]):
    """Dataset indices in a fixed order (under DDP, Lightning shards it with a ``DistributedSamplerWrapper``)."""

    def __init__(self, order: list[int]) -> None:
        self.order = order

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self):
        return iter(self.order)
