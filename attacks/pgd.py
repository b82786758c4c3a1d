"""BIM / PGD: Kurakin, Goodfellow, Bengio, "Adversarial Examples in the Physical World", ICLR workshop 2017,
https://arxiv.org/abs/1607.02533; Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks",
ICLR 2018, https://arxiv.org/abs/1706.06083."""

from __future__ import annotations

import torch
from torch import Tensor

from attacks.base import Attack, AttackResult, GradientBudget, VerificationObjective
from nets.checks import check_arg


class PGD(Attack):
    """BIM / PGD, L-inf or L2: projected gradient descent on the residual inside a ball around ``x``.

    BIM is PGD without a random start. Budget: ``steps`` gradient evaluations per trial (fewer after an early
    stop, which stops the count).

    Args:
        epsilon: budget, radius of the ball in waveform units, > 0 (0.002).
        step_size: step per iteration, > 0 (signed gradient for L-inf, normalised gradient for L2) (0.0002).
        steps: iterations, >= 1 (50).
        norm: ``"linf"`` or ``"l2"`` ("linf").
        random_start: start from a uniform draw in the L-inf ball, projected (False).
        early_stop: freeze a trial once it succeeds (True).
        clip: valid waveform range ``(low, high)`` ((-1, 1)).

    Shapes: ``x [B, T]`` -> ``adversarial [B, T]``; ``iterations``, ``grad_evals`` ``[B]``.

    Example: ``PGD(epsilon=0.5, step_size=0.05, norm="l2").perturb(test, objective)``.
    """

    def __init__(
        self,
        epsilon: float = 0.002,
        step_size: float = 0.0002,
        steps: int = 50,
        norm: str = "linf",
        random_start: bool = False,
        early_stop: bool = True,
        clip: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        super().__init__(clip)
        check_arg("norm", norm, norm in ("linf", "l2"), "'linf' or 'l2'")
        check_arg("epsilon", epsilon, epsilon > 0, "> 0")
        check_arg("step_size", step_size, step_size > 0, "> 0")
        check_arg("steps", steps, steps >= 1, ">= 1")
        self.epsilon = epsilon
        self.step_size = step_size
        self.steps = steps
        self.norm = norm
        self.random_start = random_start
        self.early_stop = early_stop

    def project(self, delta: Tensor) -> Tensor:
        """``delta`` projected onto the budget ball."""
        if self.norm == "linf":
            return delta.clamp(-self.epsilon, self.epsilon)
        norms = delta.norm(dim=1, keepdim=True).clamp(min=1e-12)
        return delta * (self.epsilon / norms).clamp(max=1.0)

    def step(self, g: Tensor) -> Tensor:
        """The step along the residual gradient ``g``."""
        if self.norm == "linf":
            return self.step_size * g.sign()
        return self.step_size * g / g.norm(dim=1, keepdim=True).clamp(min=1e-12)

    def perturb(self, x: Tensor, objective: VerificationObjective) -> AttackResult:
        budget = GradientBudget(objective)
        delta = torch.zeros_like(x)
        if self.random_start:
            delta = self.project((objective.random_like(x) * 2 - 1) * self.epsilon)
            delta = self.clamp(x + delta) - x
        active = torch.ones(len(x), dtype=torch.bool, device=x.device)
        iterations = torch.zeros(len(x), dtype=torch.long, device=x.device)
        for _ in range(self.steps):
            r, g = objective.residual_and_grad(self.clamp(x + delta), active)
            if self.early_stop:
                active &= ~objective.is_success(r)
            if not active.any():
                break
            iterations += active.long()
            new = self.project(delta - self.step(g))
            delta = torch.where(active[:, None], self.clamp(x + new) - x, delta)
        return self._result(self.clamp(x + delta), objective, iterations, budget.spent(), clean=x)
