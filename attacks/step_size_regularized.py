"""Step-size-regularized search: a trust-region iteration on the linearised verification residual.

At ``delta_k`` with residual ``r_k`` and gradient ``g``, the model ``m(D) = r_k + g^T D`` is trusted inside
``|D| <= rho_k``. The subproblem ``min_{|D| <= rho_k} max(0, m(D) + eta)^2 + mu |delta_k + D|^2`` is solved by
projected gradient (``pg_steps``, projection onto the L2 ball). The ratio of actual to predicted decrease,
``(r_k - r(delta_k + D)) / (r_k - m(D))``, grows rho (x ``grow`` above ``good``), shrinks it (x ``shrink`` below
``bad``) and rejects steps that did not decrease r; rho stays in [``rho_min``, ``rho_max``]. A trial stops at its
first success. Constants are this project's reconstruction (the paper's values were not available): standard
trust-region choices (0.25 / 0.75, x0.5 / x2), initial radius ``rho0`` in waveform L2 units.

``rho0=None`` (this project's variant) starts each trial at ``rho0_fraction`` times the linearised distance to
the boundary, ``r_0 / |g_0|``, instead of a fixed radius, saving the first growth steps (on the first 12 trials
against the synthetic-corpus ECAPA victim: 4.2 instead of 5.4 gradient evaluations at fraction 0.5).

Args: ``rho0`` (0.01; ``None``: linearised start), ``rho0_fraction`` (1.0), ``rho_min`` (1e-5), ``rho_max``
(1.0), ``steps`` (50), ``pg_steps`` (10), ``mu`` (1e-3), ``eta`` (0.01, relative overshoot of the clean
residual), ``good``, ``bad``, ``grow``, ``shrink``, ``clip``.
Shapes: ``x [B, T]`` -> ``[B, T]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attacks.base import Attack, AttackResult, VerificationObjective


def _project_ball(d: Tensor, radius: Tensor) -> Tensor:
    norms = d.norm(dim=1, keepdim=True).clamp(min=1e-20)
    return d * (radius[:, None] / norms).clamp(max=1.0)


class StepSizeRegularized(Attack):
    """Trust-region search on the linearised residual, subproblem by projected gradient."""

    def __init__(
        self,
        rho0: float | None = 0.01,
        rho0_fraction: float = 1.0,
        rho_min: float = 1e-5,
        rho_max: float = 1.0,
        steps: int = 50,
        pg_steps: int = 10,
        mu: float = 1e-3,
        eta: float = 0.01,
        good: float = 0.75,
        bad: float = 0.25,
        grow: float = 2.0,
        shrink: float = 0.5,
        clip: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        super().__init__(clip)
        self.rho0_fraction = rho0_fraction
        self.rho0, self.rho_min, self.rho_max, self.steps, self.pg_steps = rho0, rho_min, rho_max, steps, pg_steps
        self.mu, self.eta, self.good, self.bad, self.grow, self.shrink = mu, eta, good, bad, grow, shrink

    def subproblem(self, r: Tensor, g: Tensor, delta: Tensor, rho: Tensor, eta: Tensor) -> Tensor:
        """Projected gradient on the trust-region subproblem; step 1/L with L bounding the curvature."""
        step = 1.0 / (2 * (g * g).sum(1, keepdim=True) + 2 * self.mu)
        newton = -((r + eta) / (g * g).sum(1).clamp(min=1e-20))[:, None] * g  # reaches the linear boundary
        d = _project_ball(newton, rho)
        for _ in range(self.pg_steps):
            m = r + (g * d).sum(1) + eta
            grad = 2 * torch.relu(m)[:, None] * g + 2 * self.mu * (delta + d)
            d = _project_ball(d - step * grad, rho)
        return d

    def perturb(self, x: Tensor, objective: VerificationObjective) -> AttackResult:
        n = len(x)
        delta = torch.zeros_like(x)
        iterations = torch.zeros(n, dtype=torch.long)
        evals = torch.zeros(n, dtype=torch.long)
        r, g = objective.residual_and_grad(x)
        evals += 1
        if self.rho0 is None:  # the linearised distance to the boundary
            distance = r.clamp(min=0) / g.norm(dim=1).clamp(min=1e-20)
            rho = (self.rho0_fraction * distance).clamp(self.rho_min, self.rho_max)
        else:
            rho = torch.full((n,), self.rho0)
        eta = self.eta * r.abs().clamp(min=1e-3)
        active = r > 0
        for _ in range(self.steps):
            if not active.any():
                break
            d = self.subproblem(r, g, delta, rho, eta)
            candidate = self.clamp(x + delta + d) - x
            r_new, g_new = objective.residual_and_grad(x + candidate)
            evals += active.long()
            iterations += active.long()
            predicted = -(g * d).sum(1)
            ratio = (r - r_new) / predicted.clamp(min=1e-20)
            accept = active & (ratio > 0)
            rho = torch.where(active & (ratio > self.good), rho * self.grow, rho)
            rho = torch.where(active & (ratio < self.bad), rho * self.shrink, rho).clamp(self.rho_min, self.rho_max)
            delta = torch.where(accept[:, None], candidate, delta)
            r = torch.where(accept, r_new, r)
            g = torch.where(accept[:, None], g_new, g)
            active = active & (r > 0)
        return self._result(self.clamp(x + delta), objective, iterations, evals)
