"""MFCC-ivec attack (Li et al., ICASSP 2020, arXiv 1911.03078): one FGSM step on the MFCC features of the voiced
frames of the test utterance, against an i-vector victim, with epsilon in feature units.

It works in the feature domain, so the adversarial object is a feature matrix (``result.extra["features"]``);
the waveform is returned unchanged and success is judged on the features. Voiced frames: energy (c0) above the
utterance's ``voiced_quantile`` quantile (the paper's VAD is not specified here; this is the reconstruction).

Args: ``epsilon`` (feature units, 0.5), ``voiced_quantile`` (0.3). Needs a victim with ``frames`` and
``embed_frames`` (``nets.speaker.IVector``); others raise ``TypeError``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attacks.base import Attack, AttackResult, VerificationObjective


class MFCCIvec(Attack):
    """One signed-gradient step on voiced MFCC frames of an i-vector victim."""

    domain = "mfcc"

    def __init__(
        self, epsilon: float = 0.5, voiced_quantile: float = 0.3, clip: tuple[float, float] = (-1.0, 1.0)
    ) -> None:
        super().__init__(clip)
        self.epsilon, self.voiced_quantile = epsilon, voiced_quantile

    def perturb(self, x: Tensor, objective: VerificationObjective) -> AttackResult:
        victim = objective.victim
        if not (hasattr(victim, "frames") and hasattr(victim, "embed_frames")):
            raise TypeError(
                f"MFCC-ivec attacks i-vector victims (frames/embed_frames); {type(victim).__name__} has no MFCC i-vector front-end"
            )
        with torch.no_grad():
            frames = victim.frames(x)
        c0 = frames[..., 0]
        voiced = c0 >= torch.quantile(c0, self.voiced_quantile, dim=1, keepdim=True)

        def residual(f: Tensor) -> Tensor:
            return objective.residual_of_score(victim.compare(objective.enrol_embedding, victim.embed_frames(f)))

        f = frames.clone().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(residual(f).sum(), f)
        adv = frames - self.epsilon * g.sign() * voiced.unsqueeze(-1)
        with torch.no_grad():
            success = residual(adv) <= 0
        ones = torch.ones(len(x), dtype=torch.long)
        return AttackResult(x.detach(), success, ones, ones, {"features": adv.detach(), "voiced": voiced})
