"""Attentive statistics pooling and the AAM-softmax head."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nets.checks import check_arg


class AttentiveStatsPool(nn.Module):
    """Attentive statistics pooling (Okabe et al. 2018) ``[B, C, T] -> [B, 2C]``: attention-weighted mean and
    standard deviation over time; with ``global_context`` the attention also sees the utterance mean and std
    (ECAPA-TDNN's variant).

    Args:
        channels: input channels C.
        bottleneck: attention hidden size.
        global_context: feed utterance-level mean/std to the attention.
    """

    def __init__(self, channels: int, bottleneck: int = 128, global_context: bool = True) -> None:
        super().__init__()
        self.global_context = global_context
        in_ch = 3 * channels if global_context else channels
        self.attention = nn.Sequential(
            nn.Conv1d(in_ch, bottleneck, 1),
            nn.ReLU(),
            nn.BatchNorm1d(bottleneck),
            nn.Tanh(),
            nn.Conv1d(bottleneck, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        h = x
        if self.global_context:
            mean = x.mean(dim=2, keepdim=True).expand_as(x)
            std = x.var(dim=2, keepdim=True, unbiased=False).clamp(min=1e-5).sqrt().expand_as(x)
            h = torch.cat([x, mean, std], dim=1)
        w = self.attention(h).softmax(dim=2)
        mu = (x * w).sum(dim=2)
        sigma = ((x * x * w).sum(dim=2) - mu * mu).clamp(min=1e-5).sqrt()
        return torch.cat([mu, sigma], dim=1)


class AAMSoftmax(nn.Module):
    """Additive angular margin softmax (ArcFace, Deng et al. 2019): logits ``s cos(theta + m)`` for the true class,
    ``s cos(theta)`` otherwise, on L2-normalised embeddings and class weights.

    Args:
        embedding_dim: embedding size.
        n_classes: training speakers (>= 2).
        margin: angular margin m in [0, pi/2) (0.2).
        scale: logit scale s > 0 (30).
    """

    def __init__(self, embedding_dim: int, n_classes: int, margin: float = 0.2, scale: float = 30.0) -> None:
        super().__init__()
        check_arg("n_classes", n_classes, n_classes >= 2, ">= 2 speakers")
        check_arg("margin", margin, 0 <= margin < math.pi / 2, "in [0, pi/2)")
        check_arg("scale", scale, scale > 0, "> 0")
        self.weight = nn.Parameter(torch.empty(n_classes, embedding_dim))
        nn.init.xavier_normal_(self.weight)
        self.margin = margin
        self.scale = scale
        self.cos_m = math.cos(margin)
        self.sin_m = math.sin(margin)
        self.th = math.cos(math.pi - margin)
        self.mm = math.sin(math.pi - margin) * margin

    def forward(self, embedding: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Returns ``(loss, logits)``."""
        cosine = F.linear(F.normalize(embedding), F.normalize(self.weight)).clamp(-1 + 1e-7, 1 - 1e-7)
        sine = (1 - cosine * cosine).sqrt()
        phi = cosine * self.cos_m - sine * self.sin_m  # cos(theta + m)
        phi = torch.where(cosine > self.th, phi, cosine - self.mm)  # keep the target logit monotonic past pi - m
        one_hot = F.one_hot(labels, cosine.shape[1]).to(cosine.dtype)
        logits = self.scale * (one_hot * phi + (1 - one_hot) * cosine)
        return F.cross_entropy(logits, labels), logits
