"""i-vector victim: diagonal GMM-UBM and total-variability matrix trained by EM on MFCCs (Dehak et al. 2011),
with i-vector extraction written in torch so that scores are differentiable in the waveform.

Per utterance with frames x_t and UBM (w_c, m_c, Sigma_c): responsibilities g_t(c), statistics
N_c = sum_t g_t(c), F_c = Sigma_c^{-1/2} sum_t g_t(c) (x_t - m_c); with T_c the whitened blocks of T,
``L = I + sum_c N_c T_c^T T_c`` and the i-vector ``w = L^{-1} sum_c T_c^T F_c``.
Scoring: centre, optional LDA, length-normalise, cosine.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nets.speaker.contract import check_arg
from nets.speaker.encoders import SpeakerEncoder
from nets.speaker.frontend import MFCC


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
        d, c = self.frontend.dim, n_components
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
        ll = -0.5 * ((diff * diff) / self.variances + self.variances.log() + 1.8378770664093453).sum(-1)
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

    # ---- training by EM ------------------------------------------------------------------------------------
    @torch.no_grad()
    def fit_ubm(self, frames: Tensor, iterations: int = 10, generator: torch.Generator | None = None) -> list[float]:
        """EM for the diagonal UBM on pooled frames ``[N, D]``; returns the mean log-likelihood per iteration."""
        c = self.means.shape[0]
        self.means.copy_(frames[torch.randperm(len(frames), generator=generator)[:c]])
        self.variances.copy_(frames.var(0).expand_as(self.variances))
        history = []
        for _ in range(iterations):
            ll = self.log_likelihoods(frames)
            history.append(float(ll.logsumexp(-1).mean()))
            gamma = ll.softmax(-1)
            n = gamma.sum(0) + 1e-6
            means = gamma.T @ frames / n[:, None]
            variances = gamma.T @ (frames * frames) / n[:, None] - means * means
            self.means.copy_(means)
            self.variances.copy_(variances.clamp(min=1e-3 * frames.var(0)))
            self.log_weights.copy_((n / n.sum()).log())
        return history

    @torch.no_grad()
    def fit_tv(self, stats: list[tuple[Tensor, Tensor]], iterations: int = 5) -> None:
        """EM for the total-variability matrix from per-utterance statistics ``(N [C], F [C, D])``."""
        n = torch.stack([s[0] for s in stats])
        f = torch.stack([s[1] for s in stats])
        for _ in range(iterations):
            w, precision = self.ivectors(n, f)
            ww = torch.linalg.inv(precision) + w.unsqueeze(-1) * w.unsqueeze(-2)  # E[w w^T]
            a = torch.einsum("bc,brs->crs", n, ww)  # [C, R, R]
            cacc = torch.einsum("bcd,br->cdr", f, w)  # [C, D, R]
            self.T.copy_(torch.linalg.solve(a, cacc.transpose(1, 2)).transpose(1, 2))

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
        eigvals, eigvecs = torch.linalg.eig(torch.linalg.solve(within + 1e-4 * torch.eye(len(within)), between))
        order = eigvals.real.argsort(descending=True)[: self.lda.shape[1]]
        self.lda.copy_(eigvecs.real[:, order])

    @torch.no_grad()
    def fit(self, waves: list[Tensor], speakers: Tensor, ubm_iterations: int = 10, tv_iterations: int = 5) -> dict:
        """Train UBM, T and the back-end on utterances ``waves`` (each ``[T]``) with speaker indices."""
        frames = [self.frames(w.unsqueeze(0))[0] for w in waves]
        history = self.fit_ubm(torch.cat(frames), ubm_iterations, torch.Generator().manual_seed(0))
        stats = [tuple(s[0] for s in self.statistics(x.unsqueeze(0))) for x in frames]
        self.fit_tv(stats, tv_iterations)
        ivectors = self.ivectors(torch.stack([s[0] for s in stats]), torch.stack([s[1] for s in stats]))[0]
        self.fit_backend(ivectors, speakers)
        return {"ubm_log_likelihood": history}
