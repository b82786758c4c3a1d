"""FGSM (Goodfellow et al., ICLR 2015, arXiv 1412.6572): one signed-gradient step of size epsilon, L-inf.

Args: ``epsilon`` (L-inf budget, waveform units, default 0.002), ``clip``. Shapes: ``x [B, T]`` -> ``[B, T]``.

>>> # adv = FGSM(epsilon=0.002).perturb(test_waves, VerificationObjective(victim, enrol, labels, theta))
"""

from __future__ import annotations

import torch
from torch import Tensor

from attacks.base import Attack, AttackResult, VerificationObjective


class FGSM(Attack):
    """One step ``x - epsilon sign(dr/dx)`` (decreasing the residual), clipped to the waveform range."""

    def __init__(self, epsilon: float = 0.002, clip: tuple[float, float] = (-1.0, 1.0)) -> None:
        super().__init__(clip)
        self.epsilon = epsilon

    def perturb(self, x: Tensor, objective: VerificationObjective) -> AttackResult:
        _, g = objective.residual_and_grad(x)
        ones = torch.ones(len(x), dtype=torch.long)
        return self._result(self.clamp(x - self.epsilon * g.sign()), objective, ones, ones)
