"""FMN: Pintor, Roli, Brendel, Biggio, "Fast Minimum-norm Adversarial Attacks through Adaptive Norm Constraints",
NeurIPS 2021, https://arxiv.org/abs/2102.12827."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attacks.base import Attack, AttackResult, GradientBudget, Incumbent, VerificationObjective, capped, check_budget
from attacks.ddn import distance_unit
from nets.checks import check_arg


class FMN(Attack):
    """Fast Minimum-Norm, L2: normalised gradient descent on the residual, projected onto an L2 ball whose radius
    ``epsilon`` adapts; the smallest successful perturbation seen is kept.

    Per step ``k`` (Algorithm 1 of the paper, the residual ``r`` in place of the logit difference; its sign test
    ``r > 0`` means "not yet flipped"): at a success ``epsilon <- min(epsilon (1 - gamma_k), |delta*|)``
    (``delta*`` the best so far); otherwise, before any success, ``epsilon <- |delta| + |r| / |g|`` (the linear
    estimate of the distance to the boundary; ``epsilon`` starts unbounded, so the first radius is this
    estimate), after one ``epsilon <- epsilon (1 + gamma_k)``. Then ``delta <- delta - alpha_k g / |g|``,
    projected onto the ``epsilon`` ball, ``x + delta`` clipped. ``alpha_k`` and ``gamma_k`` follow cosine
    annealing to ``alpha_final alpha_0`` and ``gamma_final``. The order of the two ``epsilon`` increases is the
    paper's and its reference code's (the linear estimate only while no success was found). Where the residual is
    linear in ``delta`` the estimate is exact: the iterate lands on the boundary and stays there, on whichever side
    rounding puts it; ``overshoot`` (not in the paper) scales that radius by ``1 + overshoot`` to step past it.
    Adaptation for the clip range: the step and the estimate use the gradient without the components that would
    push a sample sitting at a clip edge outside (the clip would undo them); identical to the paper while no sample
    sits at an edge (with the raw gradient the estimate stays short of the boundary when samples sit at the edges:
    docs/attacks/design.md).

    Adaptation (not in the paper): the step is in units of ``d0 = |r(x)| / |g(x)|``, the first radius, as in
    ``attacks.ddn.DDN`` (the paper's ``alpha_0 = 1`` is about the size of the minimal norms on its images; a
    fixed fraction of ``|x|`` instead: docs/attacks/design.md). No early stop: every trial spends the whole budget; trials never flipped return ``x`` (as the reference code).

    Args:
        steps: iterations = gradient evaluations per trial, the budget, >= 1 (100; the paper also runs 1000).
        alpha_init: initial step ``alpha_0`` in units of ``d0``, > 0 (1.0, the paper's L2 value).
        alpha_final: final step as a fraction of ``alpha_0``, in (0, 1] (0.01, the reference code's alpha_0 / 100).
        gamma: initial relative radius change ``gamma_0``, in (0, 1) (0.05, the paper's).
        gamma_final: final relative radius change, in (0, gamma] (0.001, the reference code's).
        overshoot: relative overshoot of the radius from the linear estimate, >= 0 (0.0, the paper's).
        max_grad_evals: cap on the gradient evaluations per trial, None (``steps``) or >= 1; the schedules then
            run over ``min(steps, max_grad_evals)`` steps (None).
        clip: valid waveform range ``(low, high)`` ((-1, 1)).

    Shapes: ``x [B, T]`` -> ``adversarial [B, T]``; ``grad_evals``, ``iterations`` ``[B]``.

    Example: ``FMN(steps=100).perturb(test, objective)``.
    """

    def __init__(
        self,
        steps: int = 100,
        alpha_init: float = 1.0,
        alpha_final: float = 0.01,
        gamma: float = 0.05,
        gamma_final: float = 0.001,
        overshoot: float = 0.0,
        max_grad_evals: int | None = None,
        clip: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        super().__init__(clip)
        check_arg("steps", steps, steps >= 1, ">= 1")
        check_budget(max_grad_evals)
        check_arg("alpha_init", alpha_init, alpha_init > 0, "> 0")
        check_arg("alpha_final", alpha_final, 0 < alpha_final <= 1, "in (0, 1]")
        check_arg("gamma", gamma, 0 < gamma < 1, "in (0, 1)")
        check_arg("gamma_final", gamma_final, 0 < gamma_final <= gamma, f"in (0, gamma={gamma}]")
        check_arg("overshoot", overshoot, overshoot >= 0, ">= 0")
        self.budget = capped(steps, max_grad_evals)
        self.steps = steps
        self.alpha_init = alpha_init
        self.alpha_final = alpha_final
        self.gamma = gamma
        self.gamma_final = gamma_final
        self.overshoot = overshoot

    def schedule(self, i: int) -> tuple[float, float]:
        """``(alpha_k / alpha_0, gamma_k)`` of iteration ``i`` (cosine annealing)."""
        cosine = (1 + math.cos(math.pi * i / self.budget)) / 2
        alpha = self.alpha_final + (1 - self.alpha_final) * cosine
        return alpha, self.gamma_final + (self.gamma - self.gamma_final) * cosine

    def movable(self, adv: Tensor, g: Tensor) -> Tensor:
        """``g`` without the components whose descent step would push a sample at a clip edge outside."""
        blocked = ((adv >= self.clip[1]) & (g < 0)) | ((adv <= self.clip[0]) & (g > 0))
        return torch.where(blocked, 0.0, g)

    def perturb(self, x: Tensor, objective: VerificationObjective) -> AttackResult:
        worst = self.farthest(x)
        budget = GradientBudget(objective)
        epsilon = torch.full_like(worst, float("inf"))
        best = Incumbent(x)
        found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        adv = x.clone()
        for i in range(self.budget):
            alpha, gamma = self.schedule(i)
            r, g = objective.residual_and_grad(adv)
            delta = adv - x
            norm = delta.norm(dim=1)
            won = objective.is_success(r)
            best.offer(adv, norm, won)
            found |= won
            g = self.movable(adv, g)
            if i == 0:
                alpha0 = self.alpha_init * distance_unit(r, g, worst)
            g_norm = g.norm(dim=1).clamp(min=1e-30)
            grow = torch.where(found, epsilon * (1 + gamma), (1 + self.overshoot) * (norm + r.abs() / g_norm))
            epsilon = torch.where(won, torch.minimum(epsilon * (1 - gamma), best.norm), grow).minimum(worst)
            delta = delta - (alpha * alpha0 / g_norm)[:, None] * g
            delta = delta * (epsilon / delta.norm(dim=1).clamp(min=1e-30)).clamp(max=1)[:, None]  # into the ball
            adv = self.clamp(x + delta)
        spent = budget.spent()
        return self._result(best.point, objective, spent.clone(), spent, clean=x)
