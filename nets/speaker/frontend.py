"""Differentiable acoustic front-ends (inside the victim's graph, so gradients reach the waveform)."""

from __future__ import annotations

import torch
import torchaudio
from torch import Tensor, nn

from nets.checks import check_arg


class _Preemphasis(nn.Module):
    def __init__(self, coefficient: float) -> None:
        super().__init__()
        self.coefficient = coefficient

    def forward(self, wave: Tensor) -> Tensor:
        return torch.cat([wave[:, :1], wave[:, 1:] - self.coefficient * wave[:, :-1]], dim=1)


class Fbank(nn.Module):
    """Kaldi-style log mel filterbank ``[B, T] -> [B, n_mels, frames]``: pre-emphasis, 25 ms Hamming windows
    every 10 ms, power mel spectrum, log, and per-utterance mean normalisation (CMN).

    Args:
        n_mels: mel bands (>= 1).
        sample_rate: waveform sample rate.
        preemphasis: pre-emphasis coefficient in [0, 1) (Kaldi: 0.97).
        cmn: subtract each band's mean over time.
    """

    def __init__(self, n_mels: int = 80, sample_rate: int = 16000, preemphasis: float = 0.97, cmn: bool = True) -> None:
        super().__init__()
        check_arg("n_mels", n_mels, n_mels >= 1, ">= 1")
        check_arg("preemphasis", preemphasis, 0 <= preemphasis < 1, "in [0, 1)")
        self.n_mels = n_mels
        self.cmn = cmn
        self.pre = _Preemphasis(preemphasis)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate, n_fft=512, win_length=400, hop_length=160, n_mels=n_mels, window_fn=torch.hamming_window
        )

    def forward(self, wave: Tensor) -> Tensor:
        feats = (self.mel(self.pre(wave)) + 1e-6).log()
        return feats - feats.mean(dim=-1, keepdim=True) if self.cmn else feats


class MFCC(nn.Module):
    """MFCCs with deltas ``[B, T] -> [B, 3 * n_mfcc, frames]`` (static, delta, delta-delta), CMN on the statics.

    Args:
        n_mfcc: cepstral coefficients (1 to ``n_mels``).
        n_mels: mel bands before the DCT.
        sample_rate: waveform sample rate.
        deltas: append delta and delta-delta features.
    """

    def __init__(self, n_mfcc: int = 20, n_mels: int = 40, sample_rate: int = 16000, deltas: bool = True) -> None:
        super().__init__()
        check_arg("n_mfcc", n_mfcc, 1 <= n_mfcc <= n_mels, f"1 to n_mels={n_mels}")
        self.deltas = deltas
        self.pre = _Preemphasis(0.97)
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate,
            n_mfcc=n_mfcc,
            melkwargs={
                "n_fft": 512,
                "win_length": 400,
                "hop_length": 160,
                "n_mels": n_mels,
                "window_fn": torch.hamming_window,
            },
        )
        self.dim = n_mfcc * (3 if deltas else 1)

    def forward(self, wave: Tensor) -> Tensor:
        # one channel per item: torchaudio clamps dB at top_db below the max over dim -3, which for [B, mels,
        # frames] is the whole batch (pytorch/audio#3448): an utterance's features then depend on its companions
        c = self.mfcc(self.pre(wave).unsqueeze(1)).squeeze(1)
        c = c - c.mean(dim=-1, keepdim=True)
        if not self.deltas:
            return c
        d1 = torchaudio.functional.compute_deltas(c)
        return torch.cat([c, d1, torchaudio.functional.compute_deltas(d1)], dim=1)
