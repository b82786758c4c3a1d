"""The penalised minimum-norm problem of one ``QuasiNewton.perturb`` call: the penalised objective and its
evaluations (each a counted gradient evaluation, successes offered to the incumbent), the Gauss-Newton model step
and the strong-Wolfe line search (Nocedal & Wright Alg. 3.5 / 3.6 with cubic interpolation), per trial."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from attacks.base import GradientBudget, Incumbent, VerificationObjective

if TYPE_CHECKING:
    from attacks.quasi_newton import QuasiNewton

C1 = 1e-4  # strong-Wolfe constants of quasi-Newton methods (Nocedal & Wright, ch. 3): sufficient decrease
C2 = 0.9  # and curvature


class Point(NamedTuple):
    """A penalised objective value ``f [B]``, its gradient ``grad [B, T]`` at ``delta [B, T]``, and the residual
    ``r [B]`` with its gradient ``r_grad [B, T]`` (kept so that a new penalty level costs no evaluation)."""

    delta: Tensor
    f: Tensor
    grad: Tensor
    r: Tensor
    r_grad: Tensor


def where(mask: Tensor, a: Point, b: Point) -> Point:
    """Row-wise choice between two points."""
    return Point(*(torch.where(mask.view(-1, *[1] * (u.dim() - 1)), u, v) for u, v in zip(a, b)))


def cubic_step(a: Tensor, fa: Tensor, da: Tensor, b: Tensor, fb: Tensor, db: Tensor) -> Tensor:
    """Minimiser of the cubic through ``(a, fa, da)`` and ``(b, fb, db)`` (Nocedal & Wright eq. 3.59), kept at least
    a tenth of the interval away from its ends; bisection where the cubic has no minimiser there."""
    d1 = da + db - 3 * (fa - fb) / (a - b)
    d2 = torch.sign(b - a) * (d1**2 - da * db).clamp(min=0).sqrt()
    step = b - (b - a) * (db + d2 - d1) / (db - da + 2 * d2)
    low = torch.minimum(a, b)
    high = torch.maximum(a, b)
    margin = 0.1 * (high - low)
    ok = torch.isfinite(step) & (d1**2 - da * db >= 0)
    return torch.where(ok, step.clamp(low + margin, high - margin), (a + b) / 2)


class PenaltyRun:
    """The state of one ``QuasiNewton.perturb`` call: penalty weights, overshoot, budget and incumbent per trial."""

    def __init__(self, attack: QuasiNewton, x: Tensor, objective: VerificationObjective) -> None:
        self.attack = attack
        self.x = x
        self.objective = objective
        self.budget = GradientBudget(objective, attack.max_grad_evals)
        self.c = x.new_full((len(x),), attack.c)
        with torch.no_grad():
            self.eta = attack.eta * objective.residual(x).abs()  # relative, no floor; a forward pass, no gradient
        self.best = Incumbent(x)

    def offer(self, adversarial: Tensor, success: Tensor) -> None:
        """Offer the incumbent the waveforms ``adversarial`` (successes where ``success``)."""
        self.best.offer(adversarial, (adversarial - self.x).norm(dim=1), success)

    def penalised(self, delta: Tensor, r: Tensor, r_grad: Tensor) -> Point:
        """``f = 1/2 |delta|^2 + c max(0, r + eta)^2`` and its gradient."""
        excess = torch.relu(r + self.eta)
        f = 0.5 * (delta * delta).sum(1) + self.c * excess**2
        return Point(delta, f, delta + (2 * self.c * excess)[:, None] * r_grad, r, r_grad)

    def evaluate(self, delta: Tensor, rows: Tensor) -> Point:
        """The penalised objective at ``delta`` for ``rows`` (one gradient evaluation each; other rows NaN);
        successes are offered to the incumbent."""
        shifted = self.x + delta
        adversarial = self.attack.clamp(shifted)
        r, r_grad = self.objective.residual_and_grad(adversarial, rows)
        low, high = self.attack.clip
        r_grad = r_grad * ((shifted >= low) & (shifted <= high))  # the clip passes no gradient where it binds
        self.offer(adversarial, self.objective.is_success(r))
        return self.penalised(delta, r, r_grad)

    def model_step(self, here: Point, p: Tensor) -> Tensor:
        """Minimiser along ``p`` of the Gauss-Newton model of ``f`` (Hessian ``I + 2 c g_r g_r^T`` where the
        penalty is on): the first trial step while a trial has no curvature pair, where ``H_0 = I`` ignores the
        penalty's curvature and a unit step would overshoot far past the boundary."""
        on = (here.r + self.eta > 0).to(p.dtype)
        curvature = (p * p).sum(1) + 2 * self.c * on * (here.r_grad * p).sum(1) ** 2
        return -(here.grad * p).sum(1) / curvature.clamp(min=1e-30)

    def line_search(self, here: Point, p: Tensor, rows: Tensor, evals: int, step: Tensor) -> tuple[Point, Tensor]:
        """Strong-Wolfe line search along ``p`` for ``rows`` (Nocedal & Wright Alg. 3.5 and its zoom 3.6 as one
        bracket ``[lo, hi]`` per trial, ``hi = inf`` while extrapolating). Returns the new point (``here`` where
        no step decreased ``f``) and which trials moved; a search cut short keeps its best sufficient decrease.
        ``step [B]``: the first trial step."""
        slope0 = (here.grad * p).sum(1)
        lo = here
        lo_a = torch.zeros_like(here.f)
        lo_d = slope0
        hi_a = torch.full_like(here.f, float("inf"))
        hi_f = here.f
        hi_d = slope0
        a = step
        result = here
        done = ~rows
        for _ in range(evals):
            searching = ~done & self.budget.left()
            if not searching.any():
                break
            trial = self.evaluate(here.delta + a[:, None] * p, searching)
            slope = (trial.grad * p).sum(1)
            high = searching & ((trial.f > here.f + C1 * a * slope0) | (trial.f >= lo.f))
            wolfe = searching & ~high & (slope.abs() <= -C2 * slope0)
            low = searching & ~high & ~wolfe
            flip = low & (slope * (hi_a - lo_a) >= 0)  # the minimum lies behind: the old lo becomes hi
            hi_a = torch.where(high, a, torch.where(flip, lo_a, hi_a))
            hi_f = torch.where(high, trial.f, torch.where(flip, lo.f, hi_f))
            hi_d = torch.where(high, slope, torch.where(flip, lo_d, hi_d))
            lo = where(low, trial, lo)
            lo_a = torch.where(low, a, lo_a)
            lo_d = torch.where(low, slope, lo_d)
            result = where(wolfe, trial, result)
            done = done | wolfe
            a = torch.where(torch.isinf(hi_a), 2 * lo_a, cubic_step(lo_a, lo.f, lo_d, hi_a, hi_f, hi_d))
        fallback = rows & ~done & (lo_a > 0)
        return where(fallback, lo, result), rows & (done | fallback)
