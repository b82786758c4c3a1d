"""FGSM: Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015,
https://arxiv.org/abs/1412.6572."""

from __future__ import annotations

import torch
from torch import Tensor

from attacks.base import Attack, AttackResult, GradientBudget, VerificationObjective
from nets.checks import check_arg


class FGSM(Attack):
    """FGSM, L-inf: one signed-gradient step of size epsilon that decreases the residual.

    ``x_adv = clip(x - epsilon sign(dr/dx))``. Budget: one gradient evaluation per trial.

    Args:
        epsilon: L-inf budget in waveform units, > 0 (0.002).
        clip: valid waveform range ``(low, high)`` ((-1, 1)).

    Shapes: ``x [B, T]`` -> ``adversarial [B, T]``.

    Example: ``FGSM(epsilon=0.002).perturb(test, VerificationObjective(victim, enrol, labels, theta))``.
    """

    def __init__(self, epsilon: float = 0.002, clip: tuple[float, float] = (-1.0, 1.0)) -> None:
        super().__init__(clip)
        check_arg("epsilon", epsilon, epsilon > 0, "> 0")
        self.epsilon = epsilon

    def perturb(self, x: Tensor, objective: VerificationObjective) -> AttackResult:
        budget = GradientBudget(objective)
        _, g = objective.residual_and_grad(x)
        ones = torch.ones(len(x), dtype=torch.long, device=x.device)
        return self._result(self.clamp(x - self.epsilon * g.sign()), objective, ones, budget.spent(), clean=x)
