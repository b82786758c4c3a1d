"""Carlini-Wagner L2: Carlini, Wagner, "Towards Evaluating the Robustness of Neural Networks", IEEE S&P 2017,
https://arxiv.org/abs/1608.04644."""

from __future__ import annotations

import torch
from torch import Tensor

from attacks.base import Attack, AttackResult, GradientBudget, Incumbent, VerificationObjective, check_budget
from nets.checks import check_arg


class CarliniWagnerL2(Attack):
    """Carlini-Wagner, L2: Adam on distance + c x residual, with a per-trial binary search over c.

    Box constraint through ``x_adv = tanh(w)`` (scaled to ``clip``), Adam on
    ``|x_adv - x|^2 + c max(r(x_adv), -kappa_cw)``; each trial keeps its smallest successful perturbation.
    The gradient in ``w`` is the objective's counted ``dr/dx`` times the chain rule through tanh; Adam is written
    out per trial (as foolbox does), its moments reset at every binary-search round.

    Budget: one gradient evaluation per Adam step, ``search_steps x steps`` per trial; ``max_grad_evals`` spreads a
    smaller budget evenly over the rounds (``max_grad_evals // search_steps`` steps each, the remainder to the
    first rounds, never more than ``steps``).

    Args:
        c: initial trade-off constant, > 0 (1.0).
        search_steps: binary-search rounds over ``c``, >= 1 (5).
        steps: Adam steps per constant, >= 1 (100).
        lr: Adam learning rate, > 0 (0.01).
        kappa_cw: stop pushing once the residual is below ``-kappa_cw``, >= 0 (0.0).
        max_grad_evals: gradient evaluations per trial, None (``search_steps x steps``) or >= 1 (None).
        clip: valid waveform range ``(low, high)`` ((-1, 1)).

    Shapes: ``x [B, T]`` -> ``adversarial [B, T]``; ``iterations``, ``grad_evals`` ``[B]``.

    Example: ``CarliniWagnerL2(search_steps=3, steps=50).perturb(test, objective)``.
    """

    betas = (0.9, 0.999)  # Adam's defaults
    adam_eps = 1e-8

    def __init__(
        self,
        c: float = 1.0,
        search_steps: int = 5,
        steps: int = 100,
        lr: float = 0.01,
        kappa_cw: float = 0.0,
        max_grad_evals: int | None = None,
        clip: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        super().__init__(clip)
        check_arg("c", c, c > 0, "> 0")
        check_arg("search_steps", search_steps, search_steps >= 1, ">= 1")
        check_arg("steps", steps, steps >= 1, ">= 1")
        check_arg("lr", lr, lr > 0, "> 0")
        check_arg("kappa_cw", kappa_cw, kappa_cw >= 0, ">= 0")
        check_budget(max_grad_evals)
        self.c = c
        self.search_steps = search_steps
        self.steps = steps
        self.lr = lr
        self.kappa_cw = kappa_cw
        self.max_grad_evals = max_grad_evals

    def round_steps(self) -> list[int]:
        """Adam steps of each binary-search round under the budget."""
        if self.max_grad_evals is None:
            return [self.steps] * self.search_steps
        share, extra = divmod(self.max_grad_evals, self.search_steps)
        return [min(self.steps, share + (k < extra)) for k in range(self.search_steps)]

    def _to_box(self, w: Tensor) -> Tensor:
        low, high = self.clip
        return (torch.tanh(w) + 1) / 2 * (high - low) + low

    def _from_box(self, x: Tensor) -> Tensor:
        low, high = self.clip
        return torch.atanh(((x - low) / (high - low) * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6))

    def _round(self, x: Tensor, c: Tensor, steps: int, objective: VerificationObjective, best: Incumbent) -> Tensor:
        """One binary-search round of ``steps`` Adam steps at constants ``c``; offers its successes to ``best``
        and returns which trials succeeded."""
        low, high = self.clip
        w = self._from_box(x)
        m = torch.zeros_like(w)
        v = torch.zeros_like(w)
        succeeded = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for t in range(1, steps + 1):
            adv = self._to_box(w)
            r, g = objective.residual_and_grad(adv)
            dist = (adv - x).pow(2).sum(1)
            pushing = (r > -self.kappa_cw).to(x.dtype)  # where max(r, -kappa_cw) has a gradient
            grad_adv = 2 * (adv - x) + (c * pushing)[:, None] * g
            grad = grad_adv * (1 - torch.tanh(w) ** 2) * (high - low) / 2  # d x_adv / d w
            m = self.betas[0] * m + (1 - self.betas[0]) * grad
            v = self.betas[1] * v + (1 - self.betas[1]) * grad**2
            m_hat = m / (1 - self.betas[0] ** t)
            v_hat = v / (1 - self.betas[1] ** t)
            w = w - self.lr * m_hat / (v_hat.sqrt() + self.adam_eps)
            won = objective.is_success(r)
            best.offer(adv, dist.sqrt(), won)
            succeeded |= won
        return succeeded

    def perturb(self, x: Tensor, objective: VerificationObjective) -> AttackResult:
        n = len(x)
        budget = GradientBudget(objective)
        c = x.new_full((n,), self.c)
        lower = x.new_zeros(n)
        upper = x.new_full((n,), float("inf"))
        best = Incumbent(x)
        for steps in self.round_steps():
            if steps == 0:
                break
            succeeded = self._round(x, c, steps, objective, best)
            upper = torch.where(succeeded, torch.minimum(upper, c), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, c))
            c = torch.where(torch.isfinite(upper), (lower + upper) / 2, c * 10)
        spent = budget.spent()
        return self._result(self.clamp(best.point), objective, spent.clone(), spent, clean=x)
