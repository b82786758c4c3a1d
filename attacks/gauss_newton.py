"""Gauss-Newton minimum-norm search for a verification flip, the first method of the quasi-Newton attack paper
(APSIPA ASC): no norm budget, the smallest L2 step it finds. Reconstructed here from the method's description:
the paper's update rule, damping and stopping are not available, so ``update``, ``damping``, ``overshoot`` and
``early_stop`` are this project's choices, all configurable.

Why ``update="root"`` is the default: ``"project"`` forgets the part of delta orthogonal to the new gradient, and
on the trained victims, whose input gradients decorrelate within one step, it oscillates and flips far fewer
trials (measured in docs/attacks/design.md).
"""

from __future__ import annotations

import torch
from torch import Tensor

from attacks.base import Attack, AttackResult, GradientBudget, Incumbent, VerificationObjective, capped, check_budget
from nets.checks import check_arg


class GaussNewton(Attack):
    """Gauss-Newton minimum-norm search, L2: iterated linearised steps; keeps each trial's smallest success.

    ``update="root"``: Gauss-Newton on min 1/2 r(delta)^2 with the pseudo-inverse of the 1 x T Jacobian, the
    minimum-norm increment that zeroes the linearised residual, ``delta <- delta - damping (1 + overshoot) r g /
    |g|^2``. ``update="project"``: jump to the minimum-norm point of the linearised boundary, ``delta <- ((g^T delta
    - r) / |g|^2) g`` (an SQP step). On a linear scorer the first undamped step of either is the exact minimal
    perturbation ``|s - theta| / |w|``.

    Budget: one gradient evaluation per iterate, the last one only checks it: ``steps + 1`` per trial, or
    ``max_grad_evals`` when smaller (then ``max_grad_evals - 1`` steps); a trial that stops early stops counting.

    Args:
        steps: iterations, >= 1 (20).
        damping: step scale in (0, 1]; 1 = plain Gauss-Newton (1.0).
        overshoot: relative overshoot past the linearised boundary, >= 0 (0.02).
        update: ``"root"`` or ``"project"`` ("root").
        early_stop: stop a trial at its first success; otherwise keep iterating and return its smallest
            successful perturbation (True).
        max_grad_evals: gradient evaluations per trial, None (``steps + 1``) or >= 1 (None).
        clip: valid waveform range ``(low, high)`` ((-1, 1)).

    Shapes: ``x [B, T]`` -> ``adversarial [B, T]``; ``iterations``, ``grad_evals`` ``[B]``.

    Example: ``GaussNewton(steps=10).perturb(test, objective)``.
    """

    def __init__(
        self,
        steps: int = 20,
        damping: float = 1.0,
        overshoot: float = 0.02,
        update: str = "root",
        early_stop: bool = True,
        max_grad_evals: int | None = None,
        clip: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        super().__init__(clip)
        check_arg("update", update, update in ("root", "project"), "'root' or 'project'")
        check_arg("steps", steps, steps >= 1, ">= 1")
        check_arg("damping", damping, 0 < damping <= 1, "in (0, 1]")
        check_arg("overshoot", overshoot, overshoot >= 0, ">= 0")
        check_budget(max_grad_evals)
        self.steps = steps
        self.damping = damping
        self.overshoot = overshoot
        self.update = update
        self.early_stop = early_stop
        self.max_grad_evals = max_grad_evals

    def _step(self, delta: Tensor, r: Tensor, g: Tensor) -> Tensor:
        gg = (g * g).sum(1).clamp(min=1e-20)
        if self.update == "root":
            return delta - self.damping * (1 + self.overshoot) * (r / gg)[:, None] * g
        proposal = (1 + self.overshoot) * (((g * delta).sum(1) - r) / gg)[:, None] * g
        return delta + self.damping * (proposal - delta)

    def perturb(self, x: Tensor, objective: VerificationObjective) -> AttackResult:
        budget = GradientBudget(objective, capped(self.steps + 1, self.max_grad_evals))
        delta = torch.zeros_like(x)
        best = Incumbent(delta)
        iterations = torch.zeros(len(x), dtype=torch.long, device=x.device)
        active = torch.ones(len(x), dtype=torch.bool, device=x.device)
        while True:
            rows = active & budget.left()
            if not rows.any():
                break
            r, g = objective.residual_and_grad(self.clamp(x + delta), rows)  # NaN outside rows: never a success
            won = objective.is_success(r)
            best.offer(delta, delta.norm(dim=1), won)
            if self.early_stop:
                active &= ~won
            stepping = rows & active & budget.left()  # the last evaluation only checks
            iterations += stepping.long()
            step = self.clamp(x + self._step(delta, r, g)) - x
            delta = torch.where(stepping[:, None], step, delta)
        final = best.or_else(delta)  # unsuccessful trials return the last iterate
        return self._result(self.clamp(x + final), objective, iterations, budget.spent(), clean=x)
