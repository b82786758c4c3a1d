"""Carlini-Wagner L2 (Carlini & Wagner, IEEE S&P 2017, arXiv 1608.04644) on the verification residual.

Box constraint through ``x_adv = tanh(w)`` (scaled to ``clip``), Adam on ``|x_adv - x|^2 + c max(r(x_adv), -kappa_cw)``,
binary search over ``c`` (``search_steps``), keeping each trial's smallest successful perturbation.

Args: ``c`` (initial constant, 1.0), ``search_steps`` (5), ``steps`` (100 Adam steps per constant), ``lr`` (0.01),
``kappa_cw`` (0: stop pushing once the residual is below -kappa_cw), ``clip``. Shapes: ``x [B, T]`` -> ``[B, T]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attacks.base import Attack, AttackResult, VerificationObjective


class CarliniWagnerL2(Attack):
    """CW-L2 with a per-trial binary search of the trade-off constant."""

    def __init__(self, c: float = 1.0, search_steps: int = 5, steps: int = 100, lr: float = 0.01, kappa_cw: float = 0.0,
                 clip: tuple[float, float] = (-1.0, 1.0)) -> None:  # fmt: skip
        super().__init__(clip)
        self.c, self.search_steps, self.steps, self.lr, self.kappa_cw = c, search_steps, steps, lr, kappa_cw

    def _to_box(self, w: Tensor) -> Tensor:
        low, high = self.clip
        return (torch.tanh(w) + 1) / 2 * (high - low) + low

    def _from_box(self, x: Tensor) -> Tensor:
        low, high = self.clip
        return torch.atanh(((x - low) / (high - low) * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6))

    def perturb(self, x: Tensor, objective: VerificationObjective) -> AttackResult:
        n = len(x)
        c = torch.full((n,), self.c)
        lower, upper = torch.zeros(n), torch.full((n,), float("inf"))
        best, best_adv = torch.full((n,), float("inf")), x.clone()
        evals = torch.zeros(n, dtype=torch.long)
        for _ in range(self.search_steps):
            w = self._from_box(x).clone().requires_grad_(True)
            optimizer = torch.optim.Adam([w], lr=self.lr)
            succeeded = torch.zeros(n, dtype=torch.bool)
            for _ in range(self.steps):
                with torch.enable_grad():
                    adv = self._to_box(w)
                    r = objective.residual(adv)
                    dist = (adv - x).pow(2).sum(1)
                    loss = (dist + c * torch.clamp(r, min=-self.kappa_cw)).sum()
                    optimizer.zero_grad()
                    loss.backward()
                optimizer.step()
                evals += 1
                with torch.no_grad():
                    ok = (r <= 0) & (dist.sqrt() < best)
                    best = torch.where(ok, dist.sqrt(), best)
                    best_adv[ok] = adv.detach()[ok]
                    succeeded |= r <= 0
            upper = torch.where(succeeded, torch.minimum(upper, c), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, c))
            c = torch.where(torch.isfinite(upper), (lower + upper) / 2, c * 10)
        iterations = torch.full((n,), self.search_steps * self.steps, dtype=torch.long)
        return self._result(self.clamp(best_adv), objective, iterations, evals)
