"""The attack base and the verification objective (plain torch).

Threat model: white-box, only the test side of a trial is perturbed, waveform kept in [clip_min, clip_max].
One decision rule: a trial is accepted when ``s >= theta``. With sigma = +1 for a target trial (label 1) and -1
for a non-target trial, the residual is ``r(delta) = sigma (s(enrol, x + delta) - theta) + kappa``; the attack
succeeds when ``r <= 0`` and the decision flipped (``is_success``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from nets.speaker.contract import RecordsInitArgs, SpeakerVictim, check_arg


class VerificationObjective:
    """Residual of a batch of trials against a ``SpeakerVictim``; the enrolment side is embedded once here (it is
    never perturbed), halving the cost of every residual.

    Args:
        victim: the speaker model (frozen by the caller).
        enrol: enrolment waveforms ``[B, T_e]``.
        labels: 1 for target trials, 0 for non-target, ``[B]``.
        threshold: the victim's clean EER threshold theta.
        kappa: margin past the threshold that counts as success.
        enrol_embedding: precomputed ``victim.embed(enrol)`` ``[B, D]`` (e.g. each trial embedded at its length).
    """

    def __init__(
        self,
        victim: SpeakerVictim,
        enrol: Tensor,
        labels: Tensor,
        threshold: float,
        kappa: float = 0.0,
        enrol_embedding: Tensor | None = None,
    ) -> None:
        self.victim, self.enrol, self.threshold, self.kappa = victim, enrol, float(threshold), kappa
        self.labels = labels
        self.sigma = labels.float() * 2 - 1
        self.grad_evals = 0
        if enrol_embedding is None:
            with torch.no_grad():
                enrol_embedding = victim.embed(enrol)
        self.enrol_embedding = enrol_embedding

    def score(self, x: Tensor) -> Tensor:
        """Victim scores ``[B]`` of test waveforms ``x [B, T]`` (differentiable)."""
        return self.victim.compare(self.enrol_embedding, self.victim.embed(x))

    def residual_of_score(self, score: Tensor) -> Tensor:
        """``r = sigma (score - theta) + kappa`` ``[B]``."""
        return self.sigma * (score - self.threshold) + self.kappa

    def is_success(self, r: Tensor) -> Tensor:
        """Per trial: the decision at ``theta`` flipped with margin ``kappa``. ``r <= 0``, except that ``r == 0``
        on a target trial with ``kappa == 0`` means ``s == theta``, which is still accepted (``s >= theta``)."""
        return (r < 0) | ((r == 0) & ((self.sigma < 0) | (self.kappa > 0)))

    def residual(self, x: Tensor) -> Tensor:
        """``r [B]`` at test waveforms ``x [B, T]`` (differentiable)."""
        return self.residual_of_score(self.score(x))

    def residual_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(r [B], dr/dx [B, T])``; counts one gradient evaluation per trial."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            r = self.residual(x)
            (g,) = torch.autograd.grad(r.sum(), x)  # trials are independent: the sum's gradient is per-trial
        self.grad_evals += 1
        return r.detach(), g

    def subset(self, index: slice) -> VerificationObjective:
        """The objective of a slice of the trials (shares the victim and the cached enrolment embeddings)."""
        embedding = None if self.enrol_embedding is None else self.enrol_embedding[index]
        return VerificationObjective(
            self.victim, self.enrol[index], self.labels[index], self.threshold, self.kappa, embedding
        )


@dataclass
class AttackResult:
    """Adversarial test waveforms and per-trial bookkeeping."""

    adversarial: Tensor
    success: Tensor
    iterations: Tensor
    grad_evals: Tensor
    extra: dict = field(default_factory=dict)


class Attack(RecordsInitArgs):
    """Base: subclasses implement ``perturb(x, objective) -> AttackResult`` and keep outputs in the clip range.
    Constructor arguments are recorded (``init_args``) so that a checkpoint names the attack.

    Args:
        clip: valid waveform range ``(low, high)``, ``low < high`` (``(-1, 1)``).
    """

    domain = "waveform"  # what the adversarial object is; feature-domain attacks say otherwise

    def __init__(self, clip: tuple[float, float] = (-1.0, 1.0)) -> None:
        check_arg("clip", clip, len(clip) == 2 and clip[0] < clip[1], "(low, high) with low < high")
        self.clip = (float(clip[0]), float(clip[1]))

    def clamp(self, x: Tensor) -> Tensor:
        """``x`` clipped to the valid range."""
        return x.clamp(*self.clip)

    def perturb(self, x: Tensor, objective: VerificationObjective) -> AttackResult:
        """Adversarial versions of the test waveforms ``x [B, T]``."""
        raise NotImplementedError

    def _result(
        self, x_adv: Tensor, objective: VerificationObjective, iterations: Tensor, grad_evals: Tensor
    ) -> AttackResult:
        with torch.no_grad():
            success = objective.is_success(objective.residual(x_adv))
        return AttackResult(x_adv.detach(), success, iterations, grad_evals)
