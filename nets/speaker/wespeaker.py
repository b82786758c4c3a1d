"""WeSpeaker's ResNet34 (``wespeaker-voxceleb-resnet34``) behind the victim contract, loaded offline from a local
folder in its published layout (``config.yaml`` + ``avg_model.pt``) without the ``wespeaker`` package, which is not
on PyPI.

Re-implemented from WeSpeaker's published code (``wespeaker/models/resnet.py``, ``pooling_layers.py`` and the
feature pipeline of ``wespeaker/dataset/processor.py`` / ``cli/speaker.py``): the waveform at 16-bit scale
(``torchaudio.load(normalize=False)``), torchaudio's Kaldi fbank (Hamming window, no dither), per-utterance mean
normalisation, a ResNet of basic blocks [3, 4, 6, 3] on ``[B, 1, F, T]``, temporal statistics pooling (mean and
``sqrt(var + 1e-7)``) and a linear embedding layer. Parameter names follow WeSpeaker's, so its state dict loads as
it is (the AAM ``projection.*`` weights are not needed and are ignored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchaudio.compliance.kaldi as kaldi
import yaml
from torch import Tensor, nn

from nets.speaker.encoders import SpeakerEncoder
from nets.speaker.pretrained import load_weights

BLOCKS = {"ResNet18": (2, 2, 2, 2), "ResNet34": (3, 4, 6, 3)}  # WeSpeaker's basic-block ResNets


class _BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a (projected) identity shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class WeSpeakerResNet(nn.Module):
    """WeSpeaker's basic-block ResNet with TSTP pooling, features ``[B, frames, feat_dim]`` -> ``[B, embed_dim]``;
    parameter names are WeSpeaker's (``conv1``, ``layer1`` ... ``layer4``, ``seg_1``), so its state dicts load as
    they are.

    Args:
        blocks: basic blocks per stage (ResNet34: ``(3, 4, 6, 3)``).
        m_channels: channels of the first stage (doubled per stage).
        feat_dim: fbank bands.
        embed_dim: embedding size.
        two_emb_layer: a second embedding layer after ReLU and batch norm (WeSpeaker's ``two_emb_layer``).

    >>> WeSpeakerResNet((1, 1, 1, 1), m_channels=4, feat_dim=16, embed_dim=8)(torch.zeros(2, 50, 16)).shape
    torch.Size([2, 8])
    """

    def __init__(
        self,
        blocks: tuple[int, int, int, int] = (3, 4, 6, 3),
        m_channels: int = 32,
        feat_dim: int = 80,
        embed_dim: int = 256,
        two_emb_layer: bool = False,
    ) -> None:
        super().__init__()
        m = m_channels
        self.conv1 = nn.Conv2d(1, m, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(m)
        stages = []
        cin = m
        for stage, n in enumerate(blocks):
            cout = m * 2**stage
            layers = [_BasicBlock(cin if i == 0 else cout, cout, 2 if (i == 0 and stage > 0) else 1) for i in range(n)]
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        stats_dim = (feat_dim // 8) * m * 8  # channels x frequency bins after three stride-2 stages
        self.seg_1 = nn.Linear(2 * stats_dim, embed_dim)
        self.two_emb_layer = two_emb_layer
        if two_emb_layer:
            self.seg_bn_1 = nn.BatchNorm1d(embed_dim, affine=False)
            self.seg_2 = nn.Linear(embed_dim, embed_dim)

    def forward(self, feats: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(feats.transpose(1, 2).unsqueeze(1))))  # [B, 1, F, T]
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        std = torch.sqrt(x.var(dim=-1) + 1e-7)  # temporal statistics pooling (TSTP): mean and std over time
        emb = self.seg_1(torch.cat([x.mean(dim=-1).flatten(1), std.flatten(1)], dim=1))
        if self.two_emb_layer:
            emb = self.seg_2(self.seg_bn_1(F.relu(emb)))
        return emb


class _KaldiFbank(nn.Module):
    """WeSpeaker's features ``[B, T] -> [B, frames, n_mels]``: 16-bit scale, Kaldi fbank, optional CMN / CVN."""

    def __init__(self, n_mels: int, frame_length: float, frame_shift: float, norm_mean: bool, norm_var: bool) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.frame_length = frame_length
        self.frame_shift = frame_shift
        self.norm_mean = norm_mean
        self.norm_var = norm_var

    def forward(self, wave: Tensor) -> Tensor:
        feats = torch.stack([self._one(row) for row in wave])
        if self.norm_mean:
            feats = feats - feats.mean(dim=1, keepdim=True)
        if self.norm_var:
            feats = feats / torch.sqrt(feats.var(dim=1, keepdim=True) + 1e-8)
        return feats

    def _one(self, row: Tensor) -> Tensor:
        return kaldi.fbank(
            row[None].float() * (1 << 15),  # WeSpeaker reads PCM16 unnormalised
            num_mel_bins=self.n_mels,
            frame_length=self.frame_length,
            frame_shift=self.frame_shift,
            dither=0.0,
            sample_frequency=16000,
            window_type="hamming",
            use_energy=False,
        )


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        config = yaml.safe_load(path.read_text())  # plain YAML: nothing in it is executed
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(config, dict) or not isinstance(config.get("model_args"), dict):
        raise ValueError(f"{path}: expected WeSpeaker's config with 'model' and a 'model_args' mapping")
    return config


class WeSpeakerResNet34(SpeakerEncoder):
    """WeSpeaker's pretrained ResNet34 (``wespeaker-voxceleb-resnet34``: ``config.yaml`` + ``avg_model.pt``) with
    its own front-end; ``embed`` reproduces ``wespeaker.cli.speaker.Speaker.extract_embedding`` (without VAD) and
    ``score`` is the cosine before WeSpeaker's CLI maps it to ``(cos + 1) / 2``. Built in eval mode.

    Not verified by the test suite against the ``wespeaker`` package, which is not on PyPI (the comparison test is
    skipped unless ``wespeaker.models.resnet`` imports); its layers follow the published code and its state dict
    loads with every parameter matched.

    Args:
        source: the local model folder (``config.yaml``, ``avg_model.pt``); nothing is fetched from the network.
    """

    def __init__(self, source: str) -> None:
        super().__init__()
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(
                f"WeSpeaker model folder {folder} does not exist: unpack voxceleb_resnet34 (config.yaml, "
                "avg_model.pt) from WeSpeaker's pretrained-model page into it"
            )
        config = _read_config(folder / "config.yaml")
        args = config["model_args"]
        name = config.get("model")
        if name not in BLOCKS or args.get("pooling_func", "TSTP") != "TSTP":
            raise ValueError(
                f"{folder / 'config.yaml'}: model {name!r} with pooling {args.get('pooling_func', 'TSTP')!r} is not "
                f"supported (only {sorted(BLOCKS)} with TSTP)"
            )
        feat_dim = int(args.get("feat_dim", 80))
        self.embedding_dim = int(args.get("embed_dim", 256))
        self.frontend = self._frontend(config, feat_dim, folder / "config.yaml")
        self.model = WeSpeakerResNet(
            BLOCKS[name], int(args.get("m_channels", 32)), feat_dim, self.embedding_dim, bool(args.get("two_emb_layer"))
        )
        self._load(folder / "avg_model.pt")
        self.eval()

    @staticmethod
    def _frontend(config: dict[str, Any], feat_dim: int, file: Path) -> _KaldiFbank:
        dataset = config.get("dataset_args") or {}
        fbank = dataset.get("fbank_args") or {}
        cmvn = dataset.get("cmvn_args") or {}
        n_mels = int(fbank.get("num_mel_bins", 80))
        if n_mels != feat_dim:
            raise ValueError(f"{file}: fbank_args.num_mel_bins={n_mels} differs from model_args.feat_dim={feat_dim}")
        return _KaldiFbank(
            n_mels,
            float(fbank.get("frame_length", 25)),
            float(fbank.get("frame_shift", 10)),
            bool(cmvn.get("norm_mean", True)),
            bool(cmvn.get("norm_var", False)),
        )

    def _load(self, path: Path) -> None:
        state = load_weights(path)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
        state = {k: v for k, v in state.items() if not k.startswith("projection.")}  # the training head
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ValueError(f"{path}: does not fit the ResNet of config.yaml: {error}") from error

    def encode(self, feats: Tensor) -> Tensor:
        return self.model(feats)
