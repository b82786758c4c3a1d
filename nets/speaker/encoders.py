"""Neural speaker encoders: SE-ResNet-34 and ECAPA-TDNN, behind the victim contract of ``nets.speaker.contract``
(``embed`` / ``compare`` / ``score``; cosine scoring)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nets.checks import check_arg
from nets.speaker.contract import RecordsInitArgs
from nets.speaker.frontend import Fbank
from nets.speaker.pooling import AttentiveStatsPool


class SpeakerEncoder(RecordsInitArgs, nn.Module):
    """Front-end + network + cosine scoring (a ``SpeakerVictim``); subclasses build ``self.frontend`` and implement
    ``encode``. Constructor arguments are recorded (``init_args``) so that checkpoints name the architecture."""

    embedding_dim: int

    def encode(self, feats: Tensor) -> Tensor:
        """Embeddings ``[B, D]`` of front-end features."""
        raise NotImplementedError

    def embed(self, wave: Tensor) -> Tensor:
        """Embeddings ``[B, D]`` of waveforms ``[B, T]``."""
        if wave.ndim != 2:
            raise ValueError(f"embed expects waveforms [B, T], got shape {tuple(wave.shape)}")
        return self.encode(self.frontend(wave))

    def forward(self, wave: Tensor) -> Tensor:
        return self.embed(wave)

    def compare(self, enrol_embedding: Tensor, test_embedding: Tensor) -> Tensor:
        """Score of embeddings (attacks cache the enrolment side)."""
        return F.cosine_similarity(enrol_embedding, test_embedding, dim=-1)

    def score(self, enrol: Tensor, test: Tensor) -> Tensor:
        """Cosine scores ``[B]`` of waveform pairs; accept when ``score >= threshold``."""
        return self.compare(self.embed(enrol), self.embed(test))


class _SEBasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, reduction: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(cout, max(cout // reduction, 4), 1),
            nn.ReLU(True),
            nn.Conv2d(max(cout // reduction, 4), cout, 1),
            nn.Sigmoid(),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out * self.se(out) + self.shortcut(x))


class SEResNet34(SpeakerEncoder):
    """SE-ResNet-34 (SE basic blocks [3, 4, 6, 3]) on log-mel fbank with attentive statistics pooling.

    Args:
        width: channels of the first stage (doubled per stage; 32 = the common "half" ResNet-34, 64 = full).
        n_mels: fbank bands, a multiple of ``2 ** (len(layers) - 1)`` (each stage after the first halves them).
        embedding_dim: speaker embedding size.
        layers: blocks per stage (each >= 1).

    >>> SEResNet34(width=4, embedding_dim=16).embed(torch.zeros(2, 8000)).shape
    torch.Size([2, 16])
    """

    def __init__(
        self, width: int = 32, n_mels: int = 80, embedding_dim: int = 256, layers: tuple[int, ...] = (3, 4, 6, 3)
    ) -> None:
        super().__init__()
        check_arg("width", width, width >= 1, ">= 1")
        check_arg("layers", layers, len(layers) >= 1 and min(layers) >= 1, "at least one stage, each >= 1 block")
        halvings = 2 ** (len(layers) - 1)
        check_arg("n_mels", n_mels, n_mels > 0 and n_mels % halvings == 0, f"a positive multiple of {halvings}")
        check_arg("embedding_dim", embedding_dim, embedding_dim >= 1, ">= 1")
        self.frontend = Fbank(n_mels)
        self.embedding_dim = embedding_dim
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True))
        blocks = []
        cin = width
        for stage, n in enumerate(layers):
            cout = width * 2**stage
            for i in range(n):
                blocks.append(_SEBasicBlock(cin, cout, stride=2 if (i == 0 and stage > 0) else 1))
                cin = cout
        self.body = nn.Sequential(*blocks)
        channels = cin * (n_mels // halvings)
        self.pool = AttentiveStatsPool(channels, global_context=False)
        self.head = nn.Sequential(nn.BatchNorm1d(2 * channels), nn.Linear(2 * channels, embedding_dim))

    def encode(self, feats: Tensor) -> Tensor:
        x = self.body(self.stem(feats.unsqueeze(1)))  # [B, C, F', T']
        return self.head(self.pool(x.flatten(1, 2)))


class _SERes2Block(nn.Module):
    def __init__(self, channels: int, dilation: int, scale: int = 8, se_bottleneck: int = 128) -> None:
        super().__init__()
        self.scale = scale
        width = channels // scale
        self.pre = nn.Sequential(nn.Conv1d(channels, channels, 1), nn.ReLU(), nn.BatchNorm1d(channels))
        self.convs = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(width, width, 3, dilation=dilation, padding=dilation), nn.ReLU(), nn.BatchNorm1d(width)
            )
            for _ in range(scale - 1)
        )
        self.post = nn.Sequential(nn.Conv1d(channels, channels, 1), nn.ReLU(), nn.BatchNorm1d(channels))
        self.se = nn.Sequential(
            nn.Linear(channels, se_bottleneck), nn.ReLU(), nn.Linear(se_bottleneck, channels), nn.Sigmoid()
        )

    def forward(self, x: Tensor) -> Tensor:
        chunks = self.pre(x).chunk(self.scale, dim=1)
        outs = [chunks[0]]
        prev = None
        for conv, chunk in zip(self.convs, chunks[1:]):
            prev = conv(chunk if prev is None else chunk + prev)  # Res2Net hierarchical connections
            outs.append(prev)
        out = self.post(torch.cat(outs, dim=1))
        return x + out * self.se(out.mean(dim=2)).unsqueeze(2)


class ECAPATDNN(SpeakerEncoder):
    """ECAPA-TDNN (Desplanques et al. 2020): SE-Res2 blocks with dilations 2, 3, 4, multi-layer feature
    aggregation, channel- and context-dependent attentive statistics pooling, 192-d embedding.

    Args:
        channels: C of the SE-Res2 blocks (512 or 1024 in the paper; smaller for CPU runs); a multiple of ``scale``.
        n_mels: fbank bands.
        embedding_dim: speaker embedding size (192).
        mfa_channels: channels after multi-layer feature aggregation (1536 in the paper; 3 C by default).
        scale: Res2Net scale (>= 2).

    >>> ECAPATDNN(channels=32, embedding_dim=16, scale=4).embed(torch.zeros(2, 8000)).shape
    torch.Size([2, 16])
    """

    def __init__(
        self,
        channels: int = 512,
        n_mels: int = 80,
        embedding_dim: int = 192,
        mfa_channels: int | None = None,
        scale: int = 8,
    ) -> None:
        super().__init__()
        check_arg("scale", scale, scale >= 2, ">= 2")
        check_arg(
            "channels", channels, channels >= scale and channels % scale == 0, f"a positive multiple of scale={scale}"
        )
        check_arg("n_mels", n_mels, n_mels >= 1, ">= 1")
        check_arg("embedding_dim", embedding_dim, embedding_dim >= 1, ">= 1")
        check_arg("mfa_channels", mfa_channels, mfa_channels is None or mfa_channels >= 1, "None or >= 1")
        self.frontend = Fbank(n_mels)
        self.embedding_dim = embedding_dim
        mfa = mfa_channels or 3 * channels
        self.stem = nn.Sequential(nn.Conv1d(n_mels, channels, 5, padding=2), nn.ReLU(), nn.BatchNorm1d(channels))
        self.blocks = nn.ModuleList(_SERes2Block(channels, d, scale) for d in (2, 3, 4))
        self.mfa = nn.Sequential(nn.Conv1d(3 * channels, mfa, 1), nn.ReLU())
        self.pool = AttentiveStatsPool(mfa, global_context=True)
        self.head = nn.Sequential(
            nn.BatchNorm1d(2 * mfa), nn.Linear(2 * mfa, embedding_dim), nn.BatchNorm1d(embedding_dim)
        )

    def encode(self, feats: Tensor) -> Tensor:
        x = self.stem(feats)
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return self.head(self.pool(self.mfa(torch.cat(outs, dim=1))))
