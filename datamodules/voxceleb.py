"""VoxCeleb1 (standard layout) for speaker verification: training crops with speaker labels, and trials.

Layout: ``root/wav/<speaker>/<video>/<utt>.wav`` (16 kHz mono), trial lists ``veri_test.txt`` /
``veri_test2.txt`` with lines ``label path1 path2`` (paths relative to ``root/wav``), the identification split
``iden_split.txt`` (``set path``, 1 = train). Audio is read with soundfile (torchaudio.load needs
torchcodec + FFmpeg). VoxCeleb2 ships m4a (AAC): convert it to wav with FFmpeg first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import soundfile as sf
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

SAMPLE_RATE = 16000


def read_wave(path: Path, max_samples: int | None = None) -> Tensor:
    """Mono 16 kHz float32 waveform in [-1, 1]; a clear error names the file for anything else."""
    if path.suffix.lower() == ".m4a":
        raise ValueError(f"{path}: m4a (VoxCeleb2) needs FFmpeg/torchcodec, absent here; convert to 16 kHz wav first")
    if not path.is_file():
        raise FileNotFoundError(f"audio file {path} does not exist")
    info = sf.info(str(path))
    if info.samplerate != SAMPLE_RATE:
        raise ValueError(f"{path}: sample rate {info.samplerate} Hz, expected {SAMPLE_RATE} Hz (resample it first)")
    if info.channels != 1:
        raise ValueError(f"{path}: {info.channels} channels, expected mono")
    data, _ = sf.read(str(path), dtype="float32", frames=-1 if max_samples is None else max_samples)
    return torch.from_numpy(np.ascontiguousarray(data))


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


def list_training_files(wav_root: Path, exclude_speakers: set[str]) -> list[str]:
    """Relative paths of every wav under ``wav_root`` whose speaker is not excluded (sorted, deterministic)."""
    if not wav_root.is_dir():
        raise FileNotFoundError(f"{wav_root} does not exist: expected VoxCeleb1's wav/<speaker>/<video>/<utt>.wav")
    files = sorted(str(p.relative_to(wav_root)) for p in wav_root.glob("*/*/*.wav"))
    files = [f for f in files if speaker_of(f) not in exclude_speakers]
    if not files:
        raise FileNotFoundError(
            f"no training wavs under {wav_root} (after excluding {len(exclude_speakers)} trial speakers)"
        )
    return files


class CropDataset(Dataset):
    """Random fixed-length crops ``[samples]`` with speaker indices (short files are repeated to length)."""

    def __init__(self, wav_root: Path, files: list[str], speakers: list[str], samples: int) -> None:
        self.wav_root, self.files, self.samples = wav_root, files, samples
        self.index = {s: i for i, s in enumerate(speakers)}

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        wave = read_wave(self.wav_root / self.files[i])
        if len(wave) < self.samples:
            wave = wave.repeat(self.samples // max(len(wave), 1) + 1)
        start = int(torch.randint(len(wave) - self.samples + 1, ()))
        return wave[start : start + self.samples], self.index[speaker_of(self.files[i])]


class TrialDataset(Dataset):
    """``(enrol wave, test wave, label, index)`` per trial, each cut to ``max_samples`` (``None``: full length); the
    index into the trial list survives distributed sharding."""

    def __init__(self, wav_root: Path, trials: list[Trial], max_samples: int | None) -> None:
        self.wav_root, self.trials, self.max_samples = wav_root, trials, max_samples

    def __len__(self) -> int:
        return len(self.trials)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, int, int]:
        t = self.trials[i]
        return (
            read_wave(self.wav_root / t.enrol, self.max_samples),
            read_wave(self.wav_root / t.test, self.max_samples),
            t.label,
            i,
        )


def pad_trials(batch: list[tuple[Tensor, Tensor, int, int]]) -> dict[str, Tensor]:
    """Zero-pad variable-length trials; lengths are kept so models can ignore the padding."""
    enrol, test, labels, index = zip(*batch)

    def pad(waves: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        lengths = torch.tensor([len(w) for w in waves])
        out = torch.zeros(len(waves), int(lengths.max()))
        for row, w in zip(out, waves):
            row[: len(w)] = w
        return out, lengths

    (e, e_len), (t, t_len) = pad(enrol), pad(test)
    return {"enrol": e, "enrol_len": e_len, "test": t, "test_len": t_len, "label": torch.tensor(labels),
            "index": torch.tensor(index)}  # fmt: skip


class VoxCelebDataModule(L.LightningDataModule):
    """VoxCeleb1 for speaker verification (no I/O in ``__init__``).

    Training batches: ``(waves [B, crop], speaker [B])`` random crops from every speaker not in the trial list
    (the VoxCeleb1 protocol keeps test speakers out of training). Validation/test batches: padded trials
    ``{"enrol", "enrol_len", "test", "test_len", "label"}`` from ``trial_list``.

    Args:
        root: VoxCeleb1 folder holding ``wav/`` and the trial list.
        trial_list: trial list file name under ``root`` (``veri_test.txt``, ``veri_test2.txt``) or a path.
        crop_seconds: length of training crops.
        eval_max_seconds: cut trial utterances to this length; ``None`` keeps them whole.
        batch_size: training batch size.
        eval_batch_size: trials per evaluation batch.
        num_workers: DataLoader workers.
        skip_missing_trials: drop trials whose files are missing instead of raising (off: nothing is skipped
            silently).
        max_trials: keep the first ``max_trials`` trials of the list (``None``: all).
        iden_split: train on subset 1 of this identification split file (e.g. ``iden_split.txt`` under ``root``)
            instead of every non-trial speaker's files.
        synthesize: when ``root/wav`` is absent, write the synthetic corpus there first (offline default data).
        synth_speakers: speakers of the synthetic corpus.
        synth_seed: seed of the synthetic corpus.
    """

    def __init__(
        self,
        root: str = ".cache/coadv/synth_vox",
        trial_list: str = "veri_test.txt",
        crop_seconds: float = 2.0,
        eval_max_seconds: float | None = None,
        batch_size: int = 32,
        eval_batch_size: int = 8,
        num_workers: int = 0,
        skip_missing_trials: bool = False,
        max_trials: int | None = None,
        iden_split: str | None = None,
        synthesize: bool = False,
        synth_speakers: int = 40,
        synth_seed: int = 0,
    ) -> None:
        super().__init__()
        self.root, self.trial_list = Path(root), trial_list
        self.crop, self.eval_max = (
            int(crop_seconds * SAMPLE_RATE),
            eval_max_seconds and int(eval_max_seconds * SAMPLE_RATE),
        )
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.skip_missing, self.synthesize, self.iden_split = skip_missing_trials, synthesize, iden_split
        self.synth_speakers, self.synth_seed = synth_speakers, synth_seed
        if max_trials is not None and max_trials < 1:
            raise ValueError(f"max_trials={max_trials} must be at least 1 (or None for every trial)")
        self.max_trials = max_trials

    @property
    def trial_path(self) -> Path:
        path = Path(self.trial_list)
        return path if path.is_absolute() or path.parent != Path(".") else self.root / path

    def prepare_data(self) -> None:
        if self.synthesize and not (self.root / "wav").is_dir():
            from datamodules.synth_speech import write_corpus

            write_corpus(self.root, n_speakers=self.synth_speakers, seed=self.synth_seed)

    def setup(self, stage: str | None = None) -> None:
        wav = self.root / "wav"
        if not wav.is_dir():
            raise FileNotFoundError(
                f"{wav} does not exist. VoxCeleb1 needs root/wav/<speaker>/<video>/<utt>.wav and {self.trial_list} "
                "(request access at robots.ox.ac.uk/~vgg/data/voxceleb); for the offline synthetic corpus set "
                "data.init_args.synthesize=true"
            )
        trials = read_trials(self.trial_path, wav, self.skip_missing)
        trial_speakers = {speaker_of(p) for t in trials for p in (t.enrol, t.test)}  # of the whole list
        self.trials = trials[: self.max_trials]
        if self.iden_split is not None:
            split = Path(self.iden_split)
            self.train_files = read_iden_split(split if split.parent != Path(".") else self.root / split, wav)
        else:
            self.train_files = list_training_files(wav, trial_speakers)
        self.speakers = sorted({speaker_of(f) for f in self.train_files})

    @property
    def num_speakers(self) -> int:
        return len(self.speakers)

    def train_dataloader(self) -> DataLoader:
        ds = CropDataset(self.root / "wav", self.train_files, self.speakers, self.crop)
        return DataLoader(ds, batch_size=self.batch_size, shuffle=True, drop_last=True, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        ds = TrialDataset(self.root / "wav", self.trials, self.eval_max)
        return DataLoader(ds, batch_size=self.eval_batch_size, collate_fn=pad_trials, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self.val_dataloader()
