"""Resemblyzer's pretrained GE2E d-vector (``resemblyzer.VoiceEncoder``) as a differentiable victim.

The one public speaker encoder trained at scale whose weights install offline: the PyPI wheel ``resemblyzer``
(Apache-2.0) ships ``resemblyzer/pretrained.pt``, a 3-layer LSTM trained with the GE2E loss (Wan et al., ICASSP
2018) on thousands of LibriSpeech / VoxCeleb speakers. ``GE2EResemblyzer.embed`` re-implements
``VoiceEncoder.embed_utterance`` in torch so that gradients reach the waveform:

- mel power spectrogram as ``librosa.feature.melspectrogram(sr=16000, n_fft=400, hop_length=160, n_mels=40)``
  (Hann window, centred frames with zero padding, Slaney mel filters, power 2, not log) from torchaudio;
- partial utterances of 160 frames every ``round(16000 / rate / 160)`` frames, the last one dropped when it covers
  less than ``min_coverage`` of its window (the waveform is zero-padded to the last window's end);
- LSTM(40, 256, 3 layers) -> last layer's final hidden state -> Linear(256, 256) -> ReLU -> L2 per partial, mean of
  the partials, L2. Scores are cosines (Resemblyzer's dot product of unit embeddings).

Threat model: ``resemblyzer.preprocess_wav`` (volume normalisation to -30 dBFS, increase only, and VAD trimming of
long silences with webrtcvad) is not differentiable and changes the length; it is applied once to the *clean* audio
by the data pipeline (``datamodules.audio.ResemblyzerPreprocess``), and the attacker perturbs the preprocessed
waveform that the network reads. Attacks therefore do not have to survive the VAD or the volume normalisation.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

from nets.checks import check_arg
from nets.speaker.encoders import SpeakerEncoder
from nets.speaker.pretrained import load_weights

INSTALL_HINT = "pip install 'coadv[resemblyzer]' (or pip install resemblyzer==0.1.4 'setuptools<81')"
SAMPLE_RATE = 16000
HOP = 160  # 10 ms
PARTIAL_FRAMES = 160  # 1.6 s


def wheel_weights() -> Path:
    """``pretrained.pt`` inside the installed ``resemblyzer`` package, found without importing it (its import pulls
    librosa and webrtcvad; only the weights file is needed here)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or spec.origin is None:
        raise ImportError(
            f"GE2EResemblyzer reads its weights from the resemblyzer wheel, which is not installed: {INSTALL_HINT}"
        )
    return Path(spec.origin).parent / "pretrained.pt"


def partial_slices(n_samples: int, rate: float, min_coverage: float) -> list[tuple[int, int]]:
    """Frame ranges ``[(start, stop)]`` of the partial utterances of an ``n_samples`` waveform
    (``VoiceEncoder.compute_partial_slices``); the waveform is zero-padded to ``stop * HOP`` of the last one."""
    n_frames = -(-(n_samples + 1) // HOP)  # ceil((n + 1) / hop)
    step = int(round(SAMPLE_RATE / rate / HOP))
    starts = range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step)
    slices = [(i, i + PARTIAL_FRAMES) for i in starts]
    last = slices[-1][0] * HOP
    if (n_samples - last) / (PARTIAL_FRAMES * HOP) < min_coverage and len(slices) > 1:
        slices = slices[:-1]
    return slices


class GE2EResemblyzer(SpeakerEncoder):
    """Resemblyzer's pretrained GE2E LSTM d-vector (256-d) behind the victim contract; ``embed`` equals
    ``VoiceEncoder.embed_utterance`` on the same (preprocessed) audio. Built in eval mode; no training.

    Args:
        weights: a ``VoiceEncoder`` weights file (``{"model_state": ...}``); ``None``: the ``pretrained.pt`` of the
            installed ``resemblyzer`` wheel (optional extra ``coadv[resemblyzer]``). Read with
            ``torch.load(weights_only=True)``.
        rate: partial utterances per second (1.3, Resemblyzer's default); at least 16000 / (160 * 160) = 0.625.
        min_coverage: keep the last partial when it covers at least this share of its window (0.75).
    """

    def __init__(self, weights: str | None = None, rate: float = 1.3, min_coverage: float = 0.75) -> None:
        super().__init__()
        fits = SAMPLE_RATE / (HOP * PARTIAL_FRAMES) <= rate <= SAMPLE_RATE / HOP
        check_arg("rate", rate, fits, "partials per second in [0.625, 100]")
        check_arg("min_coverage", min_coverage, 0 < min_coverage <= 1, "in (0, 1]")
        self.rate = float(rate)
        self.min_coverage = float(min_coverage)
        self.embedding_dim = 256
        self.frontend = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE,
            n_fft=400,
            hop_length=HOP,
            n_mels=40,
            power=2.0,
            norm="slaney",
            mel_scale="slaney",
            center=True,
            pad_mode="constant",
        )
        self.lstm = nn.LSTM(40, 256, num_layers=3, batch_first=True)
        self.linear = nn.Linear(256, 256)
        path = Path(weights).expanduser() if weights is not None else wheel_weights()
        self._load(path)
        self.eval()

    def _load(self, path: Path) -> None:
        checkpoint = load_weights(path)
        state = checkpoint.get("model_state") if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected Resemblyzer's {{'model_state': <state dict>}}")
        mine = {k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))}
        try:
            missing, _ = self.load_state_dict(mine, strict=False)
        except RuntimeError as error:
            raise ValueError(f"{path}: does not fit the GE2E LSTM (40 -> 3 x 256 -> 256): {error}") from error
        missing = [k for k in missing if k.startswith(("lstm.", "linear."))]
        if missing:
            raise ValueError(f"{path}: does not fit the GE2E LSTM; missing {missing[:5]}")

    def partials(self, mels: Tensor) -> Tensor:
        """Unit embeddings ``[N, 256]`` of mel windows ``[N, 160, 40]`` (``VoiceEncoder.forward``)."""
        _, (hidden, _) = self.lstm(mels)
        return F.normalize(F.relu(self.linear(hidden[-1])), dim=1)

    def embed(self, wave: Tensor) -> Tensor:
        """Embeddings ``[B, 256]`` of equal-length waveforms ``[B, T]``."""
        if wave.ndim != 2:
            raise ValueError(f"embed expects waveforms [B, T], got shape {tuple(wave.shape)}")
        slices = partial_slices(wave.shape[1], self.rate, self.min_coverage)
        padded = slices[-1][1] * HOP
        if padded >= wave.shape[1]:
            wave = F.pad(wave, (0, padded - wave.shape[1]))
        mel = self.frontend(wave).transpose(1, 2)  # [B, frames, 40]
        windows = torch.stack([mel[:, a:b] for a, b in slices], dim=1)  # [B, P, 160, 40]
        partial = self.partials(windows.flatten(0, 1)).unflatten(0, windows.shape[:2])
        return F.normalize(partial.mean(dim=1), dim=1)
