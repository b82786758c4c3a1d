"""Audio files -> tensors for speaker verification: checked 16 kHz mono reads, random crops that read only their
frames, padded batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import Tensor
from torch.utils.data import Dataset

SAMPLE_RATE = 16000
AUDIO_SUFFIXES = (".wav", ".flac")


def open_audio(path: Path) -> sf.SoundFile:
    """Open a 16 kHz mono file for reading; a clear error names the file for anything else."""
    if path.suffix.lower() == ".m4a":
        raise ValueError(f"{path}: m4a (VoxCeleb2) needs FFmpeg/torchcodec, absent here; convert to 16 kHz wav first")
    if not path.is_file():
        raise FileNotFoundError(f"audio file {path} does not exist")
    f = sf.SoundFile(str(path))
    if f.samplerate != SAMPLE_RATE or f.channels != 1:
        f.close()
        if f.samplerate != SAMPLE_RATE:
            raise ValueError(f"{path}: sample rate {f.samplerate} Hz, expected {SAMPLE_RATE} Hz (resample it first)")
        raise ValueError(f"{path}: {f.channels} channels, expected mono")
    return f


def read_wave(path: Path, max_samples: int | None = None, preprocess: str | None = None) -> Tensor:
    """Mono 16 kHz float32 waveform in [-1, 1], at most ``max_samples`` long (``None``: whole file), then passed
    through the clean-audio ``preprocess`` named in ``PREPROCESS`` (``None``: as read)."""
    with open_audio(path) as f:
        data = f.read(-1 if max_samples is None else max_samples, dtype="float32")
    wave = torch.from_numpy(np.ascontiguousarray(data))
    if preprocess is None:
        return wave
    out = PREPROCESS[preprocess](wave)
    if len(out) == 0:
        raise ValueError(f"{path}: preprocess={preprocess!r} left no audio (no speech found); drop the trial")
    return out


def resemblyzer_preprocess(wave: Tensor) -> Tensor:
    """``resemblyzer.preprocess_wav`` (volume normalised to -30 dBFS, increase only; silences longer than the VAD
    allows trimmed with webrtcvad) of a clean 16 kHz waveform, clipped to [-1, 1] (the attacks' box). Applied to
    clean audio once, outside every graph: the GE2E victim's threat model (``nets.speaker.ge2e``)."""
    try:
        from resemblyzer import preprocess_wav
    except ImportError as error:
        raise ImportError(
            "data preprocess='resemblyzer' needs the resemblyzer package: pip install 'coadv[resemblyzer]'"
        ) from error
    out = preprocess_wav(wave.numpy().astype(np.float32))
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).clamp(-1.0, 1.0)


PREPROCESS = {"resemblyzer": resemblyzer_preprocess}


def read_crop(path: Path, samples: int, generator: torch.Generator | None = None) -> Tensor:
    """A random ``samples``-long crop, reading only those frames (seek + read); shorter files are repeated.
    ``generator``: the source of the crop's start (``None``: the global RNG)."""
    with open_audio(path) as f:
        if f.frames < samples:
            data = torch.from_numpy(f.read(dtype="float32"))
            data = data.repeat(samples // max(len(data), 1) + 1)
            start = int(torch.randint(len(data) - samples + 1, (), generator=generator))
            return data[start : start + samples]
        f.seek(int(torch.randint(f.frames - samples + 1, (), generator=generator)))
        return torch.from_numpy(f.read(samples, dtype="float32"))


class CropDataset(Dataset):
    """Random fixed-length crops ``[samples]`` with speaker indices (short files are repeated to length).

    An item is ``ds[i]`` (crop start from the global RNG) or ``ds[(i, seed)]`` (from ``seed``: what
    ``ShardedRandomSampler(with_seeds=True)`` yields, so crops depend neither on DataLoader workers nor on the
    global RNG, and a resumed run crops alike).
    """

    def __init__(self, wav_root: Path, files: list[str], labels: list[int], samples: int) -> None:
        self.wav_root = wav_root
        self.files = files
        self.labels = labels
        self.samples = samples

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, int]:
        i, generator = (key[0], torch.Generator().manual_seed(key[1])) if isinstance(key, tuple) else (key, None)
        return read_crop(self.wav_root / self.files[i], self.samples, generator), self.labels[i]


class UtteranceDataset(Dataset):
    """``(wave, index)`` for each distinct evaluation utterance (``DataModule.eval_utterances``)."""

    def __init__(
        self, wav_root: Path, utterances: list[str], max_samples: int | None, preprocess: str | None = None
    ) -> None:
        self.wav_root = wav_root
        self.utterances = utterances
        self.max_samples = max_samples
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return read_wave(self.wav_root / self.utterances[i], self.max_samples, self.preprocess), i


def pad_waves(waves: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    """Zero-padded ``[B, T_max]`` and the true lengths ``[B]``."""
    lengths = torch.tensor([len(w) for w in waves])
    out = torch.zeros(len(waves), int(lengths.max()))
    for row, w in zip(out, waves):
        row[: len(w)] = w
    return out, lengths


def pad_trials(batch: list[tuple[Tensor, Tensor, int, int]]) -> dict[str, Tensor]:
    """Zero-pad variable-length trials; lengths are kept so models can ignore the padding."""
    enrol, test, labels, index = zip(*batch)
    (e, e_len) = pad_waves(enrol)
    (t, t_len) = pad_waves(test)
    return {
        "enrol": e,
        "enrol_len": e_len,
        "test": t,
        "test_len": t_len,
        "label": torch.tensor(labels),
        "index": torch.tensor(index),
    }


def pad_utterances(batch: list[tuple[Tensor, int]]) -> dict[str, Tensor]:
    """``{"wave", "length", "index"}`` with ``index`` into ``eval_utterances``."""
    waves, index = zip(*batch)
    wave, length = pad_waves(waves)
    return {"wave": wave, "length": length, "index": torch.tensor(index)}
