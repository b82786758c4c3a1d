"""The inner solver of ``StepSizeRegularized``'s trust-region subproblem (plain torch, batched per trial).

The subproblem ``min |delta_k + d|^2  s.t.  r_k + eta + g_k^T d <= 0,  |d| <= rho_k`` is the Euclidean projection
of ``-delta_k`` onto a ball intersected with a half-space (one projected-gradient step of length 1/2 on
``|delta_k + d|^2`` from any point lands there, given that projection). It is solved by projected gradient on its
Lagrangian dual (``dual_projected_gradient``: the ball is kept as the simple set, the linearised boundary gets a
multiplier ``mu >= 0``, Barzilai-Borwein steps on ``mu``, bracketed); Dykstra's alternating projections converge
sublinearly exactly in the common case ``|delta_k| >> rho_k``. Objective and constraints depend on ``d`` only
through its coordinates in ``span{g_k, delta_k}``, so the inner iteration runs on those two: O(T) set-up, O(1) per
inner step, no gradient evaluations (a closed form exists in that plane; the iteration is the method as
described, and the tests check it against the closed form).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _project_ball(d: Tensor, radius: Tensor) -> Tensor:
    norms = d.norm(dim=1, keepdim=True).clamp(min=1e-30)
    return d * (radius[:, None] / norms).clamp(max=1.0)


def dual_projected_gradient(p: Tensor, h: Tensor, radius: Tensor, steps: int, tol: float = 1e-12) -> Tensor:
    """Euclidean projection of ``p [B, 2]`` onto ``{|d| <= radius} ∩ {d_0 <= h}``, for ``-radius <= h``.

    The half-plane is dualised: for a multiplier ``mu >= 0`` the Lagrangian ``|d - p|^2 + 2 mu (d_0 - h)`` is
    minimised over the disc by ``d(mu) = P_disc(p - mu e_0)``, and the dual gradient is ``psi(mu) = d(mu)_0 - h``,
    non-increasing in ``mu``. Projected gradient ascent on ``mu >= 0``, the first step 1 (``psi`` is 1-Lipschitz),
    then Barzilai-Borwein (secant) steps, kept inside the bracket of signs seen so far (bisection, or doubling
    while no upper end is known). Stops after ``steps`` steps or when ``psi`` is within ``tol x radius`` of zero
    on the feasible side; returns ``d`` at the bracket's feasible end (``-radius e_0`` if none was found), so the
    result always satisfies both constraints."""
    e0 = torch.zeros_like(p)
    e0[:, 0] = 1

    def at(mu: Tensor) -> tuple[Tensor, Tensor]:
        d = _project_ball(p - mu[:, None] * e0, radius)
        return d, d[:, 0] - h

    mu = torch.zeros_like(h)
    d, psi = at(mu)
    lo = mu
    hi = torch.where(psi <= 0, mu, torch.full_like(mu, float("inf")))
    step = torch.ones_like(mu)
    d_hi = torch.where((psi <= 0)[:, None], d, -radius[:, None] * e0)
    for k in range(steps):
        if k % 8 == 0 and bool(((hi - lo <= tol * radius) | (psi.abs() <= tol * radius) & (psi <= 0)).all()):
            break  # one sync every 8 steps
        candidate = (mu + step * psi).clamp(min=0)  # the projected gradient step on the dual
        fallback = torch.where(torch.isinf(hi), 2 * lo + radius, (lo + hi) / 2)
        candidate = torch.where((candidate > lo) & (candidate < hi), candidate, fallback)
        d_new, psi_new = at(candidate)
        secant = (candidate - mu) / (psi - psi_new)
        step = torch.where(torch.isfinite(secant) & (secant > 0), secant, step)
        feasible = psi_new <= 0
        lo = torch.where(feasible, lo, candidate)
        hi = torch.where(feasible, candidate, hi)
        d_hi = torch.where(feasible[:, None], d_new, d_hi)
        mu = candidate
        psi = psi_new
    return d_hi
