"""i-vector victim: diagonal GMM-UBM and total-variability matrix trained by EM on MFCCs (Dehak et al. 2011),
with i-vector extraction written in torch so that scores are differentiable in the waveform.

Per utterance with frames x_t and UBM (w_c, m_c, Sigma_c): responsibilities g_t(c), statistics
N_c = sum_t g_t(c), F_c = Sigma_c^{-1/2} sum_t g_t(c) (x_t - m_c); with T_c the whitened blocks of T,
``L = I + sum_c N_c T_c^T T_c`` and the i-vector ``w = L^{-1} sum_c T_c^T F_c``.
Scoring: centre, optional LDA, length-normalise, cosine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from nets.checks import check_arg
from nets.speaker.encoders import SpeakerEncoder
from nets.speaker.frontend import MFCC

LOG_2PI = math.log(2 * math.pi)


class IVector(SpeakerEncoder):
    """GMM-UBM / i-vector speaker model (a ``FeatureDomainVictim``); train with ``fit``.

    Offers ``embed``, ``compare``, ``score``, and ``frames`` / ``embed_frames`` for feature-domain attacks.

    Args:
        n_components: UBM Gaussians (>= 1).
        rank: i-vector dimension (rank of T, >= 1).
        n_mfcc: static MFCCs (1 to 40; deltas and delta-deltas are appended).
        lda_dim: LDA output dimension, 1 to ``rank`` (``None``: no LDA; cosine on centred, length-normalised
            i-vectors).

    >>> m = IVector(n_components=4, rank=3, n_mfcc=5)
    >>> m.embed(torch.zeros(2, 8000)).shape
    torch.Size([2, 3])
    """

    def __init__(self, n_components: int = 64, rank: int = 100, n_mfcc: int = 20, lda_dim: int | None = None) -> None:
        super().__init__()
        check_arg("n_components", n_components, n_components >= 1, ">= 1")
        check_arg("rank", rank, rank >= 1, ">= 1")
        check_arg("lda_dim", lda_dim, lda_dim is None or 1 <= lda_dim <= rank, f"None or 1 to rank={rank}")
        self.frontend = MFCC(n_mfcc)
        d = self.frontend.dim
        c = n_components
        self.embedding_dim = lda_dim or rank
        self.register_buffer("log_weights", torch.full((c,), -torch.log(torch.tensor(float(c)))))
        self.register_buffer("means", torch.zeros(c, d))
        self.register_buffer("variances", torch.ones(c, d))
        self.register_buffer("T", torch.randn(c, d, rank) * 0.01)  # whitened total-variability blocks
        self.register_buffer("center", torch.zeros(rank))
        self.register_buffer("lda", torch.eye(rank)[:, : self.embedding_dim].clone())

    # ---- statistics ----------------------------------------------------------------------------------------
    def frames(self, wave: Tensor) -> Tensor:
        """MFCC frames ``[B, frames, D]``."""
        return self.frontend(wave).transpose(1, 2)

    def log_likelihoods(self, x: Tensor) -> Tensor:
        """Per-component log N(x | m_c, Sigma_c) + log w_c, ``[..., C]``."""
        diff = x.unsqueeze(-2) - self.means  # [..., C, D]
        ll = -0.5 * ((diff * diff) / self.variances + self.variances.log() + LOG_2PI).sum(-1)
        return ll + self.log_weights

    def statistics(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Zeroth ``[B, C]`` and whitened centred first-order ``[B, C, D]`` statistics of frames ``[B, N, D]``."""
        gamma = self.log_likelihoods(x).softmax(-1)  # [B, N, C]
        n = gamma.sum(1)
        f = torch.einsum("bnc,bnd->bcd", gamma, x) - n.unsqueeze(-1) * self.means
        return n, f / self.variances.sqrt()

    def ivectors(self, n: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior means ``[B, R]`` and precisions ``[B, R, R]`` of the i-vectors."""
        rank = self.T.shape[-1]
        ttt = torch.einsum("cdr,cds->crs", self.T, self.T)  # T_c^T T_c
        precision = torch.eye(rank, device=n.device) + torch.einsum("bc,crs->brs", n, ttt)
        b = torch.einsum("cdr,bcd->br", self.T, f)
        return torch.linalg.solve(precision, b.unsqueeze(-1)).squeeze(-1), precision

    # ---- victim contract -----------------------------------------------------------------------------------
    def embed_frames(self, frames: Tensor) -> Tensor:
        """Embedding from MFCC frames ``[B, N, D]`` (feature-domain attacks perturb these)."""
        w, _ = self.ivectors(*self.statistics(frames))
        return (w - self.center) @ self.lda

    def encode(self, frames: Tensor) -> Tensor:
        return self.embed_frames(frames.transpose(1, 2))  # the MFCC front-end gives [B, D, frames]

    # ---- training by EM from sufficient statistics ------------------------------------------------------------
    # Every pass reads the utterances once and keeps sums only: memory follows the batch, not the corpus. The
    # E-steps run in float64 by matrix products (N x C, never the N x C x D differences of ``log_likelihoods``).
    def _log_joint(self, x: Tensor) -> Tensor:
        """log w_c + log N(x | m_c, Sigma_c) ``[N, C]`` in float64."""
        x, means, precision = x.double(), self.means.double(), 1 / self.variances.double()
        quad = (x * x) @ precision.T - 2 * x @ (means * precision).T + (means * means * precision).sum(1)
        return -0.5 * (quad - precision.log().sum(1) + x.shape[1] * LOG_2PI) + self.log_weights.double()

    def ubm_statistics(self, x: Tensor) -> UBMStatistics:
        """Zeroth, first and second order statistics of frames ``[N, D]`` under the current UBM (E-step)."""
        log_joint = self._log_joint(x)
        gamma, x = log_joint.softmax(-1), x.double()
        return UBMStatistics(gamma.sum(0), gamma.T @ x, gamma.T @ (x * x), log_joint.logsumexp(-1).sum(), len(x))

    def utterance_statistics(self, frames: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Float64 ``N [B, C]`` and whitened centred ``F [B, C, D]`` of utterances given as frames ``[N_i, D]``."""
        means = self.means.double()
        scale = self.variances.double().sqrt()
        n = []
        f = []
        for x in frames:
            gamma, x = self._log_joint(x).softmax(-1), x.double()
            n.append(gamma.sum(0))
            f.append((gamma.T @ x - n[-1][:, None] * means) / scale)
        return torch.stack(n), torch.stack(f)

    @torch.no_grad()
    def fit_ubm(
        self, frames: Tensor | Iterable[Tensor], iterations: int = 10, generator: torch.Generator | None = None
    ) -> list[float]:
        """EM for the diagonal UBM on frames ``[N, D]``, or on a re-iterable of frame chunks (read once per pass:
        two passes pick the start, then one per iteration). Start: ``C`` distinct random frames as means, the
        frame variance everywhere (the variance floor is 1e-3 of it). Returns the mean log-likelihood per iteration.
        """
        chunks = [frames] if isinstance(frames, Tensor) else frames
        total = sum((UBMStatistics.moments(x) for x in chunks), start=UBMStatistics.zero(1, self.means.shape[1]))
        var = ((total.s - total.f * total.f / total.count) / (total.count - 1)).float()  # torch.var's correction
        self.means.copy_(_pick(chunks, torch.randperm(total.count, generator=generator)[: self.means.shape[0]]))
        self.variances.copy_(var.expand_as(self.variances))
        history = []
        for _ in range(iterations):
            stats = sum((self.ubm_statistics(x) for x in chunks), start=UBMStatistics.zero(*self.means.shape))
            history.append(float(stats.log_likelihood / stats.count))
            n = stats.n + 1e-6
            means = stats.f / n[:, None]
            self.means.copy_(means)
            self.variances.copy_((stats.s / n[:, None] - means * means).float().clamp(min=1e-3 * var))
            self.log_weights.copy_((n / n.sum()).log())
        return history

    @torch.no_grad()
    def fit_tv(self, statistics: Iterable[tuple[Tensor, Tensor]], iterations: int = 5) -> None:
        """EM for the total-variability matrix from a re-iterable of batched utterance statistics ``(N [B, C],
        F [B, C, D])`` (``utterance_statistics``), read once per iteration; accumulators ``[C, R, R]`` and
        ``[C, D, R]``."""
        for _ in range(iterations):
            t = self.T.double()
            a = t.new_zeros(t.shape[0], t.shape[2], t.shape[2])
            c = torch.zeros_like(t)
            ttt = torch.einsum("cdr,cds->crs", t, t)
            for n, f in statistics:
                precision = torch.eye(t.shape[2], dtype=t.dtype, device=t.device) + torch.einsum("bc,crs->brs", n, ttt)
                cov = torch.linalg.inv(precision)
                w = (cov @ torch.einsum("cdr,bcd->br", t, f).unsqueeze(-1)).squeeze(-1)
                a += torch.einsum("bc,brs->crs", n, cov + w.unsqueeze(-1) * w.unsqueeze(-2))  # sum N_c E[w w^T]
                c += torch.einsum("bcd,br->cdr", f, w)  # sum F_c E[w]^T
            self.T.copy_(torch.linalg.solve(a, c.transpose(1, 2)).transpose(1, 2))

    @torch.no_grad()
    def fit_backend(self, ivectors: Tensor, speakers: Tensor) -> None:
        """Centre on the training i-vectors; with ``lda_dim``, LDA on length-normalised i-vectors."""
        self.center.copy_(ivectors.mean(0))
        if self.lda.shape[1] == self.lda.shape[0]:
            return
        x = F.normalize(ivectors - self.center, dim=-1)
        classes = speakers.unique()
        means = torch.stack([x[speakers == s].mean(0) for s in classes])
        within = sum(
            torch.cov((x[speakers == s] - m).T, correction=0) * (speakers == s).sum() for s, m in zip(classes, means)
        )
        between = torch.cov(means.T, correction=0) * len(x)
        eye = torch.eye(len(within), device=within.device)
        eigvals, eigvecs = torch.linalg.eig(torch.linalg.solve(within + 1e-4 * eye, between))
        order = eigvals.real.argsort(descending=True)[: self.lda.shape[1]]
        self.lda.copy_(eigvecs.real[:, order])

    @torch.no_grad()
    def fit(
        self, utterances: Iterable[tuple[list[Tensor], Tensor]], ubm_iterations: int = 10, tv_iterations: int = 5
    ) -> dict:
        """Train UBM, T and the back-end on a re-iterable of batches ``(waves [T_i] each, speaker indices [B])``
        (a DataLoader; ``[(waves, speakers)]`` for data in memory). It is read ``ubm_iterations + tv_iterations + 3``
        times; memory follows one batch, except the training i-vectors ``[U, rank]`` kept for the back-end."""
        frames = _Mapped(utterances, lambda batch: [self.frames(w[None])[0] for w in batch[0]])
        history = self.fit_ubm(_Mapped(frames, torch.cat), ubm_iterations, torch.Generator().manual_seed(0))
        self.fit_tv(_Mapped(frames, self.utterance_statistics), tv_iterations)
        ivectors = []
        speakers = []
        for waves, labels in utterances:
            n, f = self.utterance_statistics([self.frames(w[None])[0] for w in waves])
            ivectors.append(self.ivectors(n.float(), f.float())[0])
            speakers.append(labels)
        self.fit_backend(torch.cat(ivectors), torch.cat(speakers).to(self.center.device))
        return {"ubm_log_likelihood": history}


class UBMStatistics(NamedTuple):
    """Sums over frames (float64): responsibilities ``n [C]``, ``f = sum gamma x [C, D]``, ``s = sum gamma x^2``,
    the log-likelihood and the frame count; ``+`` adds them (on the first operand's device)."""

    n: Tensor
    f: Tensor
    s: Tensor
    log_likelihood: Tensor
    count: int

    @staticmethod
    def zero(components: int, dims: int) -> UBMStatistics:
        zeros = torch.zeros(components, dims, dtype=torch.float64)
        n = torch.zeros(components, dtype=torch.float64)
        log_likelihood = torch.zeros((), dtype=torch.float64)
        return UBMStatistics(n, zeros, zeros.clone(), log_likelihood, 0)

    @staticmethod
    def moments(x: Tensor) -> UBMStatistics:
        """One component with gamma = 1: the frame count, sum and square sum (``[1, D]``)."""
        x = x.double()
        n = torch.full((1,), float(len(x)), dtype=torch.float64, device=x.device)
        return UBMStatistics(n, x.sum(0, keepdim=True), (x * x).sum(0, keepdim=True), n.new_zeros(()), len(x))

    def __add__(self, other: UBMStatistics) -> UBMStatistics:  # type: ignore[override]
        return UBMStatistics(*(a + b.to(a.device) if isinstance(a, Tensor) else a + b for a, b in zip(self, other)))


class _Mapped:
    """``fn`` over each item of a re-iterable, lazily, as often as it is iterated."""

    def __init__(self, items: Iterable, fn: Callable) -> None:
        self.items = items
        self.fn = fn

    def __iter__(self) -> Iterator:
        return map(self.fn, self.items)


def _pick(chunks: Iterable[Tensor], positions: Tensor) -> Tensor:
    """Rows at ``positions`` of the concatenation of ``chunks`` (in the order of ``positions``)."""
    out = [None] * len(positions)
    offset = 0
    for x in chunks:
        inside = ((positions >= offset) & (positions < offset + len(x))).nonzero().flatten().tolist()
        for i in inside:
            out[i] = x[int(positions[i]) - offset]
        offset += len(x)
    return torch.stack(out)
