"""The attack base (plain torch): the result every attack returns, and the bookkeeping every attack shares: the
incumbent (best success so far), gradient accounting against a budget, and what the domain attacked means for a
report. The objective an attack minimises is in ``attacks.objective``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from attacks.objective import HALF, KAPPA, VerificationObjective, check_precision
from nets.checks import check_arg
from nets.speaker.contract import RecordsInitArgs, SpeakerVictim

__all__ = [
    "HALF",
    "KAPPA",
    "Attack",
    "AttackResult",
    "FeatureAttack",
    "GradientBudget",
    "Incumbent",
    "VerificationObjective",
    "capped",
    "check_budget",
    "check_precision",
]


@dataclass
class AttackResult:
    """Adversarial test waveforms and per-trial bookkeeping (``grad_evals``: gradient evaluations spent).

    ``clean`` and ``attacked``: the signal in the domain attacked (``Attack.domain``), clean and adversarial: the
    test waveforms ``[B, T]`` of a waveform attack, the MFCC frames ``[B, N, D]`` of a feature-domain one (whose
    ``adversarial`` waveform is the clean one). Reports measure ρ, draw examples and save files from these.
    ``attacked`` defaults to ``adversarial``, ``clean`` to None (unknown: an attack built without ``x``).
    """

    adversarial: Tensor
    success: Tensor
    iterations: Tensor
    grad_evals: Tensor
    extra: dict = field(default_factory=dict)
    clean: Tensor | None = None
    attacked: Tensor | None = None

    def __post_init__(self) -> None:
        if self.attacked is None:
            self.attacked = self.adversarial


class Incumbent:
    """Per trial, the best success so far: the smallest-norm point at which the search succeeded
    (``VerificationObjective.is_success``, residual ``r <= -kappa``), kept by every minimum-norm search.

    Args:
        start: what a trial holds before its first success ``[B, ...]`` (cloned): the clean input, or a zero
            perturbation.
        norm: the norm to beat per trial ``[B]``; None: infinity (any success is better).
    """

    def __init__(self, start: Tensor, norm: Tensor | None = None) -> None:
        self.point = start.clone()
        self.norm = start.new_full((len(start),), float("inf")) if norm is None else norm

    def offer(self, point: Tensor, norm: Tensor, success: Tensor) -> Tensor:
        """Keep ``point [B, ...]`` where it is a ``success [B]`` with a smaller ``norm [B]`` than the incumbent;
        returns where it was kept."""
        better = success & (norm < self.norm)
        self.norm = torch.where(better, norm, self.norm)
        self.point = torch.where(better.view(-1, *[1] * (point.dim() - 1)), point, self.point)
        return better

    @property
    def found(self) -> Tensor:
        """Trials with a success so far ``[B]``."""
        return torch.isfinite(self.norm)

    def or_else(self, fallback: Tensor) -> Tensor:
        """The incumbent where a trial succeeded, ``fallback`` elsewhere."""
        return torch.where(self.found.view(-1, *[1] * (fallback.dim() - 1)), self.point, fallback)


class GradientBudget:
    """Gradient evaluations an attack spent per trial since it started (the objective's counter, minus its value
    at the start), against an optional cap per trial.

    Args:
        objective: the objective whose ``grad_evals`` count.
        cap: evaluations allowed per trial, None (no cap) or >= 1.
    """

    def __init__(self, objective: VerificationObjective, cap: int | None = None) -> None:
        self.objective = objective
        self.start = objective.grad_evals.clone()
        self.cap = cap

    def spent(self) -> Tensor:
        """Evaluations spent per trial ``[B]`` (long)."""
        return self.objective.grad_evals - self.start

    def left(self) -> Tensor:
        """Trials that may still evaluate a gradient ``[B]``."""
        spent = self.spent()
        return torch.ones_like(spent, dtype=torch.bool) if self.cap is None else spent < self.cap


class Attack(RecordsInitArgs):
    """Base: subclasses implement ``perturb(x, objective) -> AttackResult`` and keep outputs in the clip range.
    Constructor arguments are recorded (``init_args``) so that a checkpoint names the attack.

    What the domain attacked means for a report (``domain``, ``audible``, ``embed``, ``features``) is said here, once:
    a waveform attack's signal is audio, embedded by ``victim.embed``, with MFCC frames ``victim.frames`` (for
    victims with a feature front-end); ``FeatureAttack`` says it for the MFCC domain.

    Args:
        clip: valid waveform range ``(low, high)``, ``low < high`` (``(-1, 1)``).
    """

    domain = "waveform"  # what the adversarial object is; feature-domain attacks say otherwise
    audible = True  # the attacked signal is audio: PESQ / STOI apply, files are .wav

    def __init__(self, clip: tuple[float, float] = (-1.0, 1.0)) -> None:
        check_arg("clip", clip, len(clip) == 2 and clip[0] < clip[1], "(low, high) with low < high")
        self.clip = (float(clip[0]), float(clip[1]))

    def clamp(self, x: Tensor) -> Tensor:
        """``x`` clipped to the valid range."""
        return x.clamp(*self.clip)

    def farthest(self, x: Tensor) -> Tensor:
        """Per trial ``[B]``, the largest L2 norm a perturbation of ``x [B, T]`` inside the clip box can have (its
        farthest corner; inf for an unbounded box)."""
        return torch.maximum(x - self.clip[0], self.clip[1] - x).norm(dim=1)

    def embed(self, victim: SpeakerVictim, signal: Tensor) -> Tensor:
        """Embeddings of signals in the domain attacked (waveforms here)."""
        return victim.embed(signal)

    def features(self, victim, signal: Tensor) -> Tensor:
        """MFCC frames ``[B, N, D]`` of signals in the domain attacked (``victim.frames`` of waveforms here)."""
        return victim.frames(signal)

    def perturb(self, x: Tensor, objective: VerificationObjective) -> AttackResult:
        """Adversarial versions of the test waveforms ``x [B, T]``."""
        raise NotImplementedError

    def _result(
        self,
        x_adv: Tensor,
        objective: VerificationObjective,
        iterations: Tensor,
        grad_evals: Tensor,
        clean: Tensor | None = None,
    ) -> AttackResult:
        """The attack's answer; ``success`` is each trial's decision re-scored alone (``flipped_alone``);
        ``clean``: the attacked waveforms ``x``."""
        success = objective.flipped_alone(x_adv.detach())
        return AttackResult(x_adv.detach(), success, iterations, grad_evals, clean=clean)


class FeatureAttack(Attack):
    """Base of the attacks whose adversarial object is a victim's MFCC frames (``FeatureDomainVictim``): signals
    are frames ``[B, N, D]``, embedded by ``victim.embed_frames``; not audio."""

    domain = "mfcc"
    audible = False

    def embed(self, victim, signal: Tensor) -> Tensor:
        return victim.embed_frames(signal)

    def features(self, victim, signal: Tensor) -> Tensor:
        return signal


def capped(steps: int, max_grad_evals: int | None) -> int:
    """Gradient evaluations per trial: ``steps``, or ``max_grad_evals`` when that is smaller."""
    return steps if max_grad_evals is None else min(steps, max_grad_evals)


def check_budget(max_grad_evals: int | None) -> None:
    """``max_grad_evals`` is None (no cap) or a positive number of gradient evaluations per trial."""
    check_arg("max_grad_evals", max_grad_evals, max_grad_evals is None or max_grad_evals >= 1, "None or >= 1")
