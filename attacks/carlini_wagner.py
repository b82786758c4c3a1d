"""Carlini-Wagner L2: Carlini, Wagner, "Towards Evaluating the Robustness of Neural Networks", IEEE S&P 2017,
https://arxiv.org/abs/1608.04644."""

from __future__ import annotations

import torch
from torch import Tensor

from attacks.base import Attack, AttackResult, VerificationObjective
from nets.speaker.contract import check_arg


class CarliniWagnerL2(Attack):
    """Carlini-Wagner, L2: Adam on distance + c x residual, with a per-trial binary search over c.

    Box constraint through ``x_adv = tanh(w)`` (scaled to ``clip``), Adam on
    ``|x_adv - x|^2 + c max(r(x_adv), -kappa_cw)``; each trial keeps its smallest successful perturbation.

    Args:
        c: initial trade-off constant, > 0 (1.0).
        search_steps: binary-search rounds over ``c``, >= 1 (5).
        steps: Adam steps per constant, >= 1 (100).
        lr: Adam learning rate, > 0 (0.01).
        kappa_cw: stop pushing once the residual is below ``-kappa_cw``, >= 0 (0.0).
        clip: valid waveform range ``(low, high)`` ((-1, 1)).

    Shapes: ``x [B, T]`` -> ``adversarial [B, T]``.

    Example: ``CarliniWagnerL2(search_steps=3, steps=50).perturb(test, objective)``.
    """

    def __init__(
        self,
        c: float = 1.0,
        search_steps: int = 5,
        steps: int = 100,
        lr: float = 0.01,
        kappa_cw: float = 0.0,
        clip: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        super().__init__(clip)
        check_arg("c", c, c > 0, "> 0")
        check_arg("search_steps", search_steps, search_steps >= 1, ">= 1")
        check_arg("steps", steps, steps >= 1, ">= 1")
        check_arg("lr", lr, lr > 0, "> 0")
        check_arg("kappa_cw", kappa_cw, kappa_cw >= 0, ">= 0")
        self.c, self.search_steps, self.steps, self.lr, self.kappa_cw = c, search_steps, steps, lr, kappa_cw

    def _to_box(self, w: Tensor) -> Tensor:
        low, high = self.clip
        return (torch.tanh(w) + 1) / 2 * (high - low) + low

    def _from_box(self, x: Tensor) -> Tensor:
        low, high = self.clip
        return torch.atanh(((x - low) / (high - low) * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6))

    def perturb(self, x: Tensor, objective: VerificationObjective) -> AttackResult:
        n = len(x)
        c = torch.full((n,), self.c, device=x.device)
        lower, upper = torch.zeros(n, device=x.device), torch.full((n,), float("inf"), device=x.device)
        best, best_adv = torch.full((n,), float("inf"), device=x.device), x.clone()
        evals = torch.zeros(n, dtype=torch.long, device=x.device)
        for _ in range(self.search_steps):
            w = self._from_box(x).clone().requires_grad_(True)
            optimizer = torch.optim.Adam([w], lr=self.lr)
            succeeded = torch.zeros(n, dtype=torch.bool, device=x.device)
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
                    won = objective.is_success(r.detach())
                    ok = won & (dist.sqrt() < best)
                    best = torch.where(ok, dist.sqrt(), best)
                    best_adv[ok] = adv.detach()[ok]
                    succeeded |= won
            upper = torch.where(succeeded, torch.minimum(upper, c), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, c))
            c = torch.where(torch.isfinite(upper), (lower + upper) / 2, c * 10)
        iterations = torch.full((n,), self.search_steps * self.steps, dtype=torch.long, device=x.device)
        return self._result(self.clamp(best_adv), objective, iterations, evals)
