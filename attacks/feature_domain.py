"""Any waveform attack run in a victim's feature domain: the voiced MFCC frames of an i-vector victim, the domain
MFCC-ivec (Li et al., ICASSP 2020) perturbs, so that a minimum-norm search and MFCC-ivec can be compared on the
same footing (rho_feat = |delta features| / |features|)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attacks.base import Attack, AttackResult, FeatureAttack, VerificationObjective, check_precision
from nets.checks import check_arg
from nets.speaker.contract import FeatureDomainVictim


def voiced_frames(frames: Tensor, quantile: float) -> Tensor:
    """``[B, N]``: frames whose energy (c0, the first coefficient) is at or above the utterance's ``quantile``
    quantile (the VAD of MFCC-ivec's reconstruction; the paper's VAD is not specified)."""
    c0 = frames[..., 0]
    return c0 >= torch.quantile(c0, quantile, dim=1, keepdim=True)


def require_feature_victim(victim: object, who: str) -> FeatureDomainVictim:
    if not isinstance(victim, FeatureDomainVictim):
        raise TypeError(
            f"{who} attacks i-vector victims (a FeatureDomainVictim: frames / embed_frames); "
            f"{type(victim).__name__} has no MFCC i-vector front-end"
        )
    return victim


class FeatureView:
    """A ``FeatureDomainVictim`` seen from its flattened feature frames: ``embed(z [B, N*D])`` embeds the frames
    ``z`` on the ``voiced`` frames and the clean ``frames`` elsewhere, so a search moves only voiced features (the
    gradient is zero on the others)."""

    def __init__(self, victim: FeatureDomainVictim, frames: Tensor, voiced: Tensor) -> None:
        self.victim = victim
        self.frames = frames
        self.mask = voiced.unsqueeze(-1)
        self.embedding_dim = victim.embedding_dim

    def unflatten(self, z: Tensor, rows: Tensor | slice = slice(None)) -> Tensor:
        """Frames ``[B, N, D]`` of flattened features ``z`` (of the trials ``rows``), unvoiced frames clean."""
        frames = self.frames[rows]
        mask = self.mask[rows]
        return torch.where(mask, z.reshape(frames.shape), frames)

    rows_hint: Tensor | slice | None = None  # the trials being embedded (set by FeatureObjective)

    def embed(self, z: Tensor) -> Tensor:
        rows = self.rows_hint if self.rows_hint is not None else slice(None)
        return self.victim.embed_frames(self.unflatten(z, rows))

    def compare(self, enrol_embedding: Tensor, test_embedding: Tensor) -> Tensor:
        return self.victim.compare(enrol_embedding, test_embedding)

    def score(self, enrol: Tensor, test: Tensor) -> Tensor:
        raise NotImplementedError("a FeatureView scores features against enrolment embeddings only")


class FeatureObjective(VerificationObjective):
    """The verification objective of a batch of trials on their flattened feature frames (``FeatureView``): each
    evaluation tells the view which trials it embeds, so unvoiced frames come from the right trials."""

    def _score(self, x: Tensor, rows: Tensor | slice, embed) -> Tensor:
        self.victim.rows_hint = rows
        try:
            return super()._score(x, rows, embed)
        finally:
            self.victim.rows_hint = None


def lift_clip(attack: Attack) -> None:
    """Set ``clip`` to (-inf, inf) on ``attack`` and on every attack it wraps (a boundary search's, a warm start)."""
    attack.clip = (-math.inf, math.inf)
    for value in vars(attack).values():
        if isinstance(value, Attack):
            lift_clip(value)


class FeatureDomain(FeatureAttack):
    """Run ``attack`` on the voiced MFCC frames of an i-vector victim instead of the waveform.

    The inner attack sees each trial's feature matrix flattened (``[B, N * D]``); unvoiced frames (``voiced_quantile``,
    as MFCC-ivec) stay clean. Features are not clipped: the inner attack's ``clip`` is lifted to (-inf, inf). Its
    budget, success margin and final decision (the trial re-scored alone, through the victim's ``embed_frames``)
    are those of the waveform runs. Result as MFCC-ivec's: the waveform unchanged, the adversarial frames in
    ``extra["features"] [B, N, D]`` and the voiced mask in ``extra["voiced"]``; rho is then
    ``|delta features| / |features|``.

    Args:
        attack: the search to run (GaussNewton, QuasiNewton, StepSizeRegularized, DDN, FMN, BIM, ...).
        voiced_quantile: frames whose c0 is below this quantile of the utterance are left alone, in [0, 1) (0.3).
    """

    def __init__(self, attack: Attack, voiced_quantile: float = 0.3) -> None:
        super().__init__()
        check_arg("attack", attack, isinstance(attack, Attack) and attack.domain == "waveform", "a waveform Attack")
        check_arg("voiced_quantile", voiced_quantile, 0 <= voiced_quantile < 1, "in [0, 1)")
        self.attack = attack
        self.voiced_quantile = voiced_quantile
        lift_clip(self.attack)  # features have no valid range to keep

    def perturb(self, x: Tensor, objective: VerificationObjective) -> AttackResult:
        victim = require_feature_victim(objective.victim, f"{type(self.attack).__name__} in the feature domain")
        check_precision("the attacked input", x.dtype)
        with torch.no_grad():
            frames = victim.frames(x)
        voiced = voiced_frames(frames, self.voiced_quantile)
        view = FeatureView(victim, frames, voiced)
        seeds = None if objective.seeds is None else torch.tensor(objective.seeds)
        inner = FeatureObjective(
            view,
            objective.enrol,
            objective.labels,
            objective.threshold,
            objective.kappa,
            objective.enrol_embedding,
            seeds,
        )
        result = self.attack.perturb(frames.flatten(1), inner)
        objective.grad_evals += inner.grad_evals
        adversarial = view.unflatten(result.adversarial).detach()
        extra = {**result.extra, "features": adversarial, "voiced": voiced}
        return AttackResult(
            x.detach(), result.success, result.iterations, result.grad_evals, extra, clean=frames, attacked=adversarial
        )
