"""DDN: Rony, Hafemann, Oliveira, Ben Ayed, Sabourin, Granger, "Decoupling Direction and Norm for Efficient
Gradient-Based L2 Adversarial Attacks and Defenses", CVPR 2019, https://arxiv.org/abs/1811.09600."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attacks.base import Attack, AttackResult, GradientBudget, Incumbent, VerificationObjective, capped, check_budget
from nets.checks import check_arg


def distance_unit(r: Tensor, g: Tensor, worst: Tensor) -> Tensor:
    """``d0 = |r| / |g|`` per trial, the first-order distance to the boundary, kept within ``[1e-8, 1] x worst``
    (``worst``: the box's largest norm, inf for an unbounded domain, where the floor is 1e-30; ``r = 0`` and
    ``g = 0`` would give 0, NaN or inf)."""
    floor = torch.where(torch.isfinite(worst), 1e-8 * worst, torch.full_like(worst, 1e-30))
    return torch.maximum((r.abs() / g.norm(dim=1)).nan_to_num(0.0), floor).minimum(worst)


class DDN(Attack):
    """Decoupled Direction and Norm, L2 minimum norm: a normalised gradient step on the residual sets the
    direction, a norm ``epsilon`` that shrinks while the iterate flips the decision and grows while it does not
    sets the length; the smallest successful perturbation seen is kept.

    Per step ``k`` (Algorithm 1 of the paper, with the residual ``r`` in place of the cross-entropy):
    ``delta <- delta - alpha_k g / |g|`` (a random direction from the trial's own generator where ``g = 0``),
    ``epsilon <- epsilon (1 -+ gamma)`` as ``x + delta`` was / was not a success (capped at the largest norm the
    clip range allows), ``delta <- epsilon delta / |delta|`` (onto the sphere), ``x + delta`` clipped. ``alpha_k``
    follows the paper's cosine schedule from ``alpha`` to ``alpha_final alpha`` (the reference code's SGD +
    CosineAnnealingLR).

    Adaptation (not in the paper, hence arguments): lengths are in units of ``d0 = |r(x)| / |g(x)|``, the
    first-order distance to the boundary at ``x``, from the first gradient evaluation (no extra cost; kept within
    ``[1e-8, 1]`` times the box's largest norm, for ``r(x) = 0`` or ``g(x) = 0``). The paper's ``epsilon_0 =
    alpha_0 = 1`` is about the size of the minimal norms on its images; ``d0`` is about the size of the minimal
    perturbation of each trial, so the paper's values carry over; a fixed fraction of ``|x|`` cannot play that
    part, as minimal ρ differs between victims (measurements in docs/attacks/design.md). No early stop (a minimum-norm search keeps
    shrinking): every trial spends the whole budget; trials never flipped return ``x`` (as the reference code).

    Args:
        steps: iterations = gradient evaluations per trial, the budget, >= 1 (100, the paper's default).
        gamma: relative norm change per step, in (0, 1) (0.05, the paper's).
        init_epsilon: initial norm ``epsilon_0`` in units of ``d0``, > 0 (1.0, the paper's 1).
        alpha: initial step in units of ``d0``, > 0 (1.0, the paper's 1).
        alpha_final: final step as a fraction of ``alpha``, in (0, 1] (0.01, the paper's 1 -> 0.01).
        max_grad_evals: cap on the gradient evaluations per trial, None (``steps``) or >= 1; the schedules then
            run over ``min(steps, max_grad_evals)`` steps (None).
        clip: valid waveform range ``(low, high)`` ((-1, 1)).

    Shapes: ``x [B, T]`` -> ``adversarial [B, T]``; ``grad_evals``, ``iterations`` ``[B]``.

    Example: ``DDN(steps=100).perturb(test, objective)``.
    """

    def __init__(
        self,
        steps: int = 100,
        gamma: float = 0.05,
        init_epsilon: float = 1.0,
        alpha: float = 1.0,
        alpha_final: float = 0.01,
        max_grad_evals: int | None = None,
        clip: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        super().__init__(clip)
        check_arg("steps", steps, steps >= 1, ">= 1")
        check_budget(max_grad_evals)
        check_arg("gamma", gamma, 0 < gamma < 1, "in (0, 1)")
        check_arg("init_epsilon", init_epsilon, init_epsilon > 0, "> 0")
        check_arg("alpha", alpha, alpha > 0, "> 0")
        check_arg("alpha_final", alpha_final, 0 < alpha_final <= 1, "in (0, 1]")
        self.budget = capped(steps, max_grad_evals)
        self.steps = steps
        self.gamma = gamma
        self.init_epsilon = init_epsilon
        self.alpha = alpha
        self.alpha_final = alpha_final

    def schedule(self, i: int) -> float:
        """Step of iteration ``i`` as a fraction of ``alpha`` (cosine annealing to ``alpha_final``)."""
        return self.alpha_final + (1 - self.alpha_final) * (1 + math.cos(math.pi * i / self.budget)) / 2

    def perturb(self, x: Tensor, objective: VerificationObjective) -> AttackResult:
        worst = self.farthest(x)
        budget = GradientBudget(objective)
        best = Incumbent(x)
        adv = x.clone()
        for i in range(self.budget):
            r, g = objective.residual_and_grad(adv)
            if i == 0:
                unit = distance_unit(r, g, worst)
                epsilon = self.init_epsilon * unit
            delta = adv - x
            won = objective.is_success(r)
            best.offer(adv, delta.norm(dim=1), won)
            g_norm = g.norm(dim=1, keepdim=True)
            if (g_norm == 0).any():  # the reference code's guard: a random direction, not a NaN
                g = torch.where(g_norm == 0, objective.random_like(g, "normal"), g)
                g_norm = g.norm(dim=1, keepdim=True)
            delta = delta - (self.schedule(i) * self.alpha * unit)[:, None] * g / g_norm
            epsilon = torch.where(won, epsilon * (1 - self.gamma), epsilon * (1 + self.gamma)).minimum(worst)
            delta = delta * (epsilon / delta.norm(dim=1).clamp(min=1e-30))[:, None]  # onto the sphere
            adv = self.clamp(x + delta)
        spent = budget.spent()
        return self._result(best.point, objective, spent.clone(), spent, clean=x)
