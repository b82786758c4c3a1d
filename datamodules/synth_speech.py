"""A synthetic multi-speaker corpus in the VoxCeleb1 layout, for offline tests and demos of speaker verification.

Source-filter synthesis: a glottal pulse train (per-speaker mean pitch and range, jitter, shimmer) drives
cascaded formant resonators whose frequencies are the speaker's vowel formants scaled by a vocal-tract factor;
a per-speaker spectral tilt shapes the source, fricative-like noise bursts separate the vowel-like segments,
and each utterance draws its own phone-like sequence, speaking rate and optional background noise. Files go to
``root/wav/<speaker>/<video>/<utt>.wav`` (16 kHz, mono, PCM16) with a trial list ``root/veri_test.txt``
(``label path1 path2``, label 1 = same speaker). Deterministic for a seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter
from tqdm import tqdm

SAMPLE_RATE = 16000
# F1, F2, F3 (Hz) of a few vowels for an average adult vocal tract (Peterson & Barney style values)
VOWELS = np.array(
    [
        [730, 1090, 2440],
        [270, 2290, 3010],
        [300, 870, 2240],
        [530, 1840, 2480],
        [570, 840, 2410],
        [660, 1720, 2410],
        [440, 1020, 2240],
        [390, 1990, 2550],
    ],
    dtype=float,
)


def speaker_profile(rng: np.random.Generator) -> dict:
    """Voice parameters that stay fixed for one speaker."""
    return {
        "f0": rng.uniform(85, 255),  # mean pitch (Hz)
        "f0_range": rng.uniform(0.05, 0.25),  # relative intonation excursion
        "tract": rng.uniform(0.8, 1.25),  # formant scaling (shorter tract -> higher formants)
        "tilt": rng.uniform(0.75, 0.97),  # one-pole source tilt coefficient
        "jitter": rng.uniform(0.005, 0.03),
        "shimmer": rng.uniform(0.02, 0.15),
        "bandwidth": rng.uniform(50, 120),  # formant bandwidth (Hz)
        "vowel_bias": rng.dirichlet(np.ones(len(VOWELS)) * 0.7),  # habitual vowel use
        "rate": rng.uniform(0.08, 0.16),  # mean segment length (s)
    }


def _resonator(x: np.ndarray, freq: float, bandwidth: float) -> np.ndarray:
    r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
    theta = 2 * np.pi * freq / SAMPLE_RATE
    a = [1.0, -2 * r * np.cos(theta), r * r]
    return lfilter([1 - r], a, x)


def _voiced(rng: np.random.Generator, spk: dict, n: int, f0: float, formants: np.ndarray) -> np.ndarray:
    source = np.zeros(n)
    t = 0.0
    while t < n:
        period = SAMPLE_RATE / (f0 * (1 + spk["jitter"] * rng.standard_normal()))
        source[int(t)] = 1 + spk["shimmer"] * rng.standard_normal()
        t += max(period, 20)
    source = lfilter([1.0], [1.0, -spk["tilt"]], source)  # spectral tilt of the glottal source
    out = source
    for f in formants * spk["tract"]:
        out = _resonator(out, min(f, 0.45 * SAMPLE_RATE), spk["bandwidth"])
    return out


def synthesize(rng: np.random.Generator, spk: dict, seconds: float, noise_db: float | None) -> np.ndarray:
    """One utterance of about ``seconds`` seconds, peak-normalised to 0.5 (float32 in [-1, 1])."""
    segments = []
    total = int(seconds * SAMPLE_RATE)
    length = 0
    while length < total:
        n = int(SAMPLE_RATE * spk["rate"] * rng.uniform(0.6, 1.6))
        if rng.random() < 0.2:  # fricative-like burst
            seg = _resonator(rng.standard_normal(n), rng.uniform(2500, 6000), 800) * 0.3
        else:
            vowel = VOWELS[rng.choice(len(VOWELS), p=spk["vowel_bias"])]
            f0 = spk["f0"] * (1 + spk["f0_range"] * rng.uniform(-1, 1))
            seg = _voiced(rng, spk, n, f0, vowel)
        seg = seg * np.hanning(n)
        segments.append(seg / (np.abs(seg).max() + 1e-9))
        length += n
    wave = np.concatenate(segments)[:total]
    if noise_db is not None:
        power = np.mean(wave**2)
        wave = wave + rng.standard_normal(len(wave)) * np.sqrt(power / 10 ** (noise_db / 10))
    return (0.5 * wave / (np.abs(wave).max() + 1e-9)).astype(np.float32)


def write_corpus(
    root: str | Path,
    n_speakers: int = 40,
    videos: int = 2,
    utts_per_video: int = 4,
    seconds: tuple[float, float] = (2.0, 4.0),
    n_trials: int = 400,
    noise_db: float | None = 30.0,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write the corpus and its trial list under ``root``; returns the trial list path.

    Trials pair utterances of the last ``n_speakers // 4`` speakers (held out from training, as VoxCeleb1's test
    speakers are), half target and half non-target. ``progress``: a bar over speakers, with ETA.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    files: dict[str, list[str]] = {}
    for s in tqdm(range(n_speakers), desc=f"synthesizing {root}", unit="speaker", disable=not progress, leave=False):
        spk = speaker_profile(rng)
        sid = f"id{10001 + s}"
        files[sid] = []
        for v in range(videos):
            folder = root / "wav" / sid / f"vid{v:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for u in range(utts_per_video):
                rel = f"{sid}/vid{v:02d}/{u + 1:05d}.wav"
                sf.write(
                    root / "wav" / rel, synthesize(rng, spk, rng.uniform(*seconds), noise_db), SAMPLE_RATE, "PCM_16"
                )
                files[sid].append(rel)
    test_ids = sorted(files)[-max(2, n_speakers // 4) :]
    lines = []
    for i in range(n_trials):
        a = test_ids[rng.integers(len(test_ids))]
        b = a if i % 2 == 0 else rng.choice([s for s in test_ids if s != a])
        u1 = rng.choice(files[a])
        u2 = rng.choice([f for f in files[b] if f != u1])
        lines.append(f"{int(a == b)} {u1} {u2}")
    trials = root / "veri_test.txt"
    trials.write_text("\n".join(lines) + "\n")
    (root / "test_speakers.txt").write_text("\n".join(test_ids) + "\n")
    return trials
