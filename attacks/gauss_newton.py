"""Gauss-Newton minimum-norm search for a verification flip (no norm budget: the smallest L2 step it finds).

Each iteration linearises the residual at ``delta_k`` and moves to the minimum-norm point of the linearised
boundary ``r_k + g^T (delta - delta_k) = 0``: ``delta_{k+1} = ((g^T delta_k - r_k) / |g|^2) g``, damped as
``delta_k + damping (delta_{k+1} - delta_k)``, with an ``overshoot`` factor so the flip survives rounding. On a
linear scorer the first undamped step is the exact minimal perturbation |s - theta| / |w|.

Args: ``steps`` (20), ``damping`` (1.0 = plain Gauss-Newton), ``overshoot`` (0.02), ``clip``.
Shapes: ``x [B, T]`` -> ``[B, T]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attacks.base import Attack, AttackResult, VerificationObjective


class GaussNewton(Attack):
    """Iterated minimum-norm linearised steps; keeps, per trial, the smallest successful perturbation."""

    def __init__(
        self, steps: int = 20, damping: float = 1.0, overshoot: float = 0.02, clip: tuple[float, float] = (-1.0, 1.0)
    ) -> None:
        super().__init__(clip)
        self.steps, self.damping, self.overshoot = steps, damping, overshoot

    def perturb(self, x: Tensor, objective: VerificationObjective) -> AttackResult:
        delta = torch.zeros_like(x)
        best = torch.full((len(x),), float("inf"))
        best_delta = torch.zeros_like(x)
        iterations = torch.zeros(len(x), dtype=torch.long)
        for _ in range(self.steps):
            r, g = objective.residual_and_grad(self.clamp(x + delta))
            norm = delta.norm(dim=1)
            improved = (r <= 0) & (norm < best)
            best = torch.where(improved, norm, best)
            best_delta[improved] = delta[improved]
            target = ((g * delta).sum(1) - r) / (g * g).sum(1).clamp(min=1e-20)
            proposal = (1 + self.overshoot) * target[:, None] * g
            delta = self.clamp(x + delta + self.damping * (proposal - delta)) - x
            iterations += 1
        r = objective.residual(self.clamp(x + delta)).detach()
        last = (r <= 0) & (delta.norm(dim=1) < best)
        best_delta[last] = delta[last]
        found = torch.isfinite(best) | last
        final = torch.where(found[:, None], best_delta, delta)  # unsuccessful trials return the last iterate
        return self._result(self.clamp(x + final), objective, iterations, iterations + 1)
