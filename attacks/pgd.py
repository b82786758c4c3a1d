"""BIM / PGD (Kurakin et al. 2017; Madry et al., ICLR 2018, arXiv 1706.06083), L-inf or L2.

Args: ``epsilon`` (budget), ``step_size``, ``steps``, ``norm`` (``"linf"`` or ``"l2"``), ``random_start``,
``early_stop`` (freeze a trial once it succeeds), ``clip``. Shapes: ``x [B, T]`` -> ``[B, T]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attacks.base import Attack, AttackResult, VerificationObjective


class PGD(Attack):
    """Projected gradient descent on the residual inside an L-inf or L2 ball around ``x``."""

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
        if norm not in ("linf", "l2"):
            raise ValueError(f"norm={norm!r} is not 'linf' or 'l2'")
        self.epsilon, self.step_size, self.steps, self.norm = epsilon, step_size, steps, norm
        self.random_start, self.early_stop = random_start, early_stop

    def project(self, delta: Tensor) -> Tensor:
        if self.norm == "linf":
            return delta.clamp(-self.epsilon, self.epsilon)
        norms = delta.norm(dim=1, keepdim=True).clamp(min=1e-12)
        return delta * (self.epsilon / norms).clamp(max=1.0)

    def step(self, g: Tensor) -> Tensor:
        if self.norm == "linf":
            return self.step_size * g.sign()
        return self.step_size * g / g.norm(dim=1, keepdim=True).clamp(min=1e-12)

    def perturb(self, x: Tensor, objective: VerificationObjective) -> AttackResult:
        delta = torch.zeros_like(x)
        if self.random_start:
            delta = self.project(torch.empty_like(x).uniform_(-self.epsilon, self.epsilon))
        active = torch.ones(len(x), dtype=torch.bool)
        iterations = torch.zeros(len(x), dtype=torch.long)
        for _ in range(self.steps):
            r, g = objective.residual_and_grad(self.clamp(x + delta))
            if self.early_stop:
                active &= r > 0
            if not active.any():
                break
            iterations += active.long()
            new = self.project(delta - self.step(g))
            delta = torch.where(active[:, None], self.clamp(x + new) - x, delta)
        return self._result(self.clamp(x + delta), objective, iterations, iterations + 1)
