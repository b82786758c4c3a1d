"""MFCC-ivec: Li et al., "Adversarial Attacks on GMM i-vector based Speaker Verification Systems", ICASSP 2020,
https://arxiv.org/abs/1911.03078."""

from __future__ import annotations

import torch
from torch import Tensor

from attacks.base import AttackResult, FeatureAttack, GradientBudget, VerificationObjective, check_precision
from attacks.feature_domain import require_feature_victim, voiced_frames
from nets.checks import check_arg


class MFCCIvec(FeatureAttack):
    """MFCC-ivec, L-inf in feature units: one FGSM step on the voiced MFCC frames against an i-vector victim.

    It works in the feature domain: the adversarial object is a feature matrix (``result.extra["features"]``,
    ``[B, N, D]``), the waveform is returned unchanged and success is judged on the features. Voiced frames: energy
    (c0) at or above the utterance's ``voiced_quantile`` quantile (the paper's VAD is not specified; this is the
    reconstruction). Needs a ``FeatureDomainVictim`` (``frames`` / ``embed_frames``, e.g. ``nets.speaker.IVector``);
    other victims raise ``TypeError``. Budget: one gradient evaluation per trial.

    Args:
        epsilon: L-inf step in MFCC feature units, > 0 (0.5).
        voiced_quantile: frames whose c0 is below this quantile of the utterance are left alone, in [0, 1) (0.3).

    Shapes: ``x [B, T]`` -> ``adversarial [B, T]`` (unchanged), ``extra["features"] [B, N, D]``,
    ``extra["voiced"] [B, N]``.

    Example: ``MFCCIvec(epsilon=0.5).perturb(test, VerificationObjective(ivector, enrol, labels, theta))``.
    """

    def __init__(self, epsilon: float = 0.5, voiced_quantile: float = 0.3) -> None:
        super().__init__()
        check_arg("epsilon", epsilon, epsilon > 0, "> 0")
        check_arg("voiced_quantile", voiced_quantile, 0 <= voiced_quantile < 1, "in [0, 1)")
        self.epsilon = epsilon
        self.voiced_quantile = voiced_quantile

    def perturb(self, x: Tensor, objective: VerificationObjective) -> AttackResult:
        victim = require_feature_victim(objective.victim, "MFCC-ivec")
        check_precision("the attacked input", x.dtype)
        budget = GradientBudget(objective)
        with torch.no_grad():
            frames = victim.frames(x)
        voiced = voiced_frames(frames, self.voiced_quantile)
        _, g = objective.residual_and_grad(frames, embed=victim.embed_frames)
        adv = frames - self.epsilon * g.sign() * voiced.unsqueeze(-1)
        with torch.no_grad():  # each trial re-scored alone: the final decision carries no batch noise
            embedded = [victim.embed_frames(adv[i : i + 1]) for i in range(len(adv))]
            score = victim.compare(objective.enrol_embedding, torch.cat(embedded))
            success = objective.flipped(score)
        ones = torch.ones(len(x), dtype=torch.long, device=x.device)
        extra = {"features": adv.detach(), "voiced": voiced}
        return AttackResult(x.detach(), success, ones, budget.spent(), extra, clean=frames, attacked=extra["features"])
