"""Step-size-regularized search, the method of the step-size regularization paper (ICASSP), reconstructed here
from the method's description: a trust-region iteration on the linearised verification residual that, once the decision flipped,
walks along the boundary toward the smallest perturbation. The paper's details were not available: the merit
functions, the inner solver and the constants are this project's choices, all configurable (standard
trust-region values 0.25 / 0.75, x0.5 / x2).
"""

from __future__ import annotations

import torch
from torch import Tensor

from attacks.base import Attack, AttackResult, GradientBudget, VerificationObjective, capped, check_budget
from attacks.trust_region import dual_projected_gradient
from nets.checks import check_arg


class StepSizeRegularized(Attack):
    """Step-size-regularized search, L2: a trust region on the linearised residual; after the first flip it keeps
    shrinking the perturbation along the linearised boundary.

    At ``delta_k`` with residual ``r_k``, gradient ``g_k`` and radius ``rho_k`` the step ``d`` solves
    ``min |delta_k + d|^2  s.t.  r_k + eta + g_k^T d <= 0,  |d| <= rho_k`` when the linearised boundary (shifted by
    the overshoot ``eta``) is reachable inside the radius, else ``min r_k + g_k^T d, |d| <= rho_k`` (closed form:
    ``d = -rho_k g_k / |g_k|``). The first problem is the Euclidean projection of ``-delta_k`` onto a ball
    intersected with a half-space, solved in ``span{g_k, delta_k}`` by projected gradient on its Lagrangian dual
    (``attacks.trust_region``: no gradient evaluations). When the radius binds and
    ``delta_k`` is not parallel to ``g_k`` the solution differs from the projected Newton step
    ``P_ball(-(r_k + eta) g_k / |g_k|^2)``.

    Before the first success (``before_flip``): ``"root"`` (default) solves the same problem for the increment alone,
    ``min |d|`` (``delta_k`` replaced by 0), i.e. the Gauss-Newton root step ``-(r_k + eta) g_k / |g_k|^2`` capped at
    the radius; ``"project"`` keeps ``|delta_k + d|``. On the trained victims the input gradient decorrelates within
    a step, so the projected start pulls back the samples already used (their gradient is near zero: the model
    sees that as free) and undoes its progress within small budgets (measured in docs/attacks/ssr_overshoot.md).

    Merit and radius: before the first success the merit is the residual (predicted decrease ``-g_k^T d``);
    after it, ``|delta|`` among successful points (predicted ``|delta_k| - |delta_k + d|``, actual ``-inf`` if the
    candidate loses the flip). ``ratio = actual / predicted`` accepts the step above ``accept`` (a first success is
    always accepted), grows rho (x ``grow``) above ``good`` when the step reached the radius, shrinks it
    (x ``shrink``) below ``bad``; rho stays in [``rho_min``, ``rho_max``]. A successful trial stops when the model
    predicts a relative decrease of ``|delta|`` below ``tol``, or when a step is rejected at ``rho_min``
    (before the first success see Restart). Accepted steps after the first success keep it and shorten delta, so the final iterate is the
    smallest success. ``rho0=None`` (this project's variant) starts at ``rho0_fraction`` times the linearised
    distance to the boundary ``r_0 / |g_0|``.

    Overshoot: ``eta`` is relative to each trial's clean residual (no absolute floor: a trial near theta gets a
    proportionally small one). ``eta_decay < 1`` multiplies it by that factor at every step after the first success,
    so the walk aims ever closer to the boundary itself (exact on a linear victim); the default keeps it fixed: on
    curved real boundaries an annealed walk keeps losing the flip and stops at ``rho_min`` with budget left
    (docs/attacks/ssr_overshoot.md); fixed, it ends on the boundary shifted by ``eta`` (relative).

    Correction (``correct``): a walk step after the first success that loses the flip (the boundary curves away
    from its linearisation) is not simply rejected: one Gauss-Newton step from the rejected candidate ``c`` back to
    its own linearised boundary, ``c - (r(c) + eta) g(c) / |g(c)|^2``, is evaluated (one more gradient evaluation,
    within the budget) and taken in its place when it is a success smaller than the incumbent: the second-order
    correction of SQP methods. Without it the radius shrinks to ``rho_min`` on curved boundaries and the trial
    stops with budget left. A corrected point is taken whenever it is a smaller success (whatever ``accept``) and
    leaves the radius unchanged: the step's predicted decrease does not describe it. A candidate with a zero
    gradient gets no correction.

    Restart (``restart``): a trial rejected at ``rho_min`` before its first success (it sits a hair on the clean side
    of a boundary its linearisation keeps missing) does not stop while budget is left: its overshoot is multiplied
    by ``restart`` (up to the clean residual ``|r_0|``; a trial whose overshoot cannot grow, e.g. ``eta = 0``, stops)
    and its radius reset to the linearised distance to that deeper target. The first success puts the overshoot back
    to its set value, so the walk still ends on the boundary shifted by ``eta``.

    Box: the waveform stays in ``clip``. Gradient components that push a sample already at a bound further out are
    masked before the step is solved (the step would be clipped away there), so the linearised model predicts
    what the clipped candidate does.

    Budget: one gradient evaluation at ``x``, one per outer step and one per correction, at most ``steps + 1`` per
    trial, or ``max_grad_evals`` when smaller; a trial that stops stops counting.

    Args:
        rho0: initial trust radius in waveform L2 units, > 0; ``None``: the linearised start (0.01).
        rho0_fraction: multiple of the linearised distance used by ``rho0=None``, > 0 (1.0).
        rho_min: smallest radius, > 0 (1e-5).
        rho_max: largest radius, >= ``rho_min`` (1.0).
        steps: outer iterations (gradient evaluations after the first), >= 1 (50).
        inner_steps: dual projected-gradient steps per subproblem, >= 1 (100).
        eta: overshoot past the linearised boundary, relative to the clean residual, >= 0 (0.01).
        eta_decay: factor applied to the overshoot at each step after the first success, in (0, 1] (1.0: fixed).
        accept: smallest agreement ratio at which a step is taken, in [0, ``bad``] (0.0).
        good: agreement ratio above which rho grows, > ``bad`` (0.75).
        bad: agreement ratio below which rho shrinks, >= 0 (0.25).
        grow: growth factor, > 1 (2.0).
        shrink: shrink factor, in (0, 1) (0.5).
        tol: relative predicted decrease of ``|delta|`` below which a successful trial stops, >= 0 (1e-6).
        max_grad_evals: gradient evaluations per trial, None (``steps + 1``) or >= 1 (None).
        clip: valid waveform range ``(low, high)`` ((-1, 1)).
        correct: second-order correction of walk steps that lose the flip (True).
        restart: factor on the overshoot when a trial is stuck at ``rho_min`` before its first success, >= 1; 1 stops
            the trial there instead (10.0).
        before_flip: step before the first success, ``"root"`` (increment only) or ``"project"`` (``"root"``).

    Shapes: ``x [B, T]`` -> ``adversarial [B, T]``; ``iterations``, ``grad_evals`` ``[B]``.

    Example: ``StepSizeRegularized(rho0=None, rho0_fraction=0.5).perturb(test, objective)``.
    """

    def __init__(
        self,
        rho0: float | None = 0.01,
        rho0_fraction: float = 1.0,
        rho_min: float = 1e-5,
        rho_max: float = 1.0,
        steps: int = 50,
        inner_steps: int = 100,
        eta: float = 0.01,
        eta_decay: float = 1.0,
        accept: float = 0.0,
        good: float = 0.75,
        bad: float = 0.25,
        grow: float = 2.0,
        shrink: float = 0.5,
        tol: float = 1e-6,
        max_grad_evals: int | None = None,
        clip: tuple[float, float] = (-1.0, 1.0),
        correct: bool = True,
        restart: float = 10.0,
        before_flip: str = "root",
    ) -> None:
        super().__init__(clip)
        check_arg("rho0", rho0, rho0 is None or rho0 > 0, "None or > 0")
        check_arg("rho0_fraction", rho0_fraction, rho0_fraction > 0, "> 0")
        check_arg("rho_min", rho_min, rho_min > 0, "> 0")
        check_arg("rho_max", rho_max, rho_max >= rho_min, f">= rho_min={rho_min}")
        check_arg("steps", steps, steps >= 1, ">= 1")
        check_arg("inner_steps", inner_steps, inner_steps >= 1, ">= 1")
        check_arg("eta", eta, eta >= 0, ">= 0")
        check_arg("eta_decay", eta_decay, 0 < eta_decay <= 1, "in (0, 1]")
        check_arg("bad", bad, bad >= 0, ">= 0")
        check_arg("accept", accept, 0 <= accept <= bad, f"in [0, bad={bad}]")
        check_arg("good", good, good > bad, f"> bad={bad}")
        check_arg("grow", grow, grow > 1, "> 1")
        check_arg("shrink", shrink, 0 < shrink < 1, "in (0, 1)")
        check_arg("tol", tol, tol >= 0, ">= 0")
        check_arg("restart", restart, restart >= 1, ">= 1")
        check_arg("before_flip", before_flip, before_flip in ("root", "project"), "'root' or 'project'")
        check_budget(max_grad_evals)
        self.rho0 = rho0
        self.rho0_fraction = rho0_fraction
        self.rho_min = rho_min
        self.rho_max = rho_max
        self.steps = steps
        self.inner_steps = inner_steps
        self.eta = eta
        self.tol = tol
        self.max_grad_evals = max_grad_evals
        self.accept = accept
        self.good = good
        self.bad = bad
        self.grow = grow
        self.shrink = shrink
        self.eta_decay = eta_decay
        self.correct = correct
        self.restart = restart
        self.before_flip = before_flip

    def subproblem(self, delta: Tensor, r: Tensor, g: Tensor, rho: Tensor, eta: Tensor) -> Tensor:
        """The step ``d [B, T]`` from ``delta [B, T]`` with residual ``r [B]``, gradient ``g [B, T]``, radius
        ``rho [B]`` and overshoot ``eta [B]`` (see the class docstring)."""
        g_norm = g.norm(dim=1).clamp(min=1e-30)
        e0 = g / g_norm[:, None]
        along = (delta * e0).sum(1)
        across = delta - along[:, None] * e0
        across_norm = across.norm(dim=1)
        e1 = across / across_norm.clamp(min=1e-30)[:, None]  # zero when delta is parallel to g
        h = -(r + eta) / g_norm  # the linearised boundary: d_0 <= h
        reachable = h >= -rho
        plane = dual_projected_gradient(
            torch.stack([-along, -across_norm], 1), h.clamp(min=-rho), rho, self.inner_steps
        )
        plane = torch.where(reachable[:, None], plane, torch.stack([-rho, torch.zeros_like(rho)], 1))
        return plane[:, :1] * e0 + plane[:, 1:] * e1

    def _radius0(self, r: Tensor, g: Tensor, eta: Tensor, linearised: bool = False) -> Tensor:
        if self.rho0 is None or linearised:  # the linearised distance to the boundary
            distance = (r + eta).clamp(min=0) / g.norm(dim=1).clamp(min=1e-30)
            return (self.rho0_fraction * distance).clamp(self.rho_min, self.rho_max)
        return torch.full_like(r, self.rho0)

    def initial_state(self, x: Tensor, objective: VerificationObjective) -> dict:
        """The search's state at ``x`` after its first gradient evaluation: ``delta`` (zero), residual ``r``,
        box-masked gradient ``g``, success ``won``, overshoot ``eta`` (its set value ``eta0``), clean residual size
        ``r0`` and the gradient ``budget`` (opened before that evaluation)."""
        budget = GradientBudget(objective, capped(self.steps + 1, self.max_grad_evals))
        r, g = objective.residual_and_grad(x)
        g = self.box_mask(x, g)
        eta = self.eta * r.abs()
        won = objective.is_success(r)
        state = {"delta": torch.zeros_like(x), "r": r, "g": g, "won": won, "eta": eta, "eta0": eta, "r0": r.abs()}
        return {**state, "budget": budget}

    def perturb(self, x: Tensor, objective: VerificationObjective) -> AttackResult:
        state = self.initial_state(x, objective)
        budget = state["budget"]
        rho = self._radius0(state["r"], state["g"], state["eta"])
        active = ~state["won"]  # a trial already flipped needs no perturbation
        iterations = torch.zeros(len(x), dtype=torch.long, device=x.device)
        while True:
            rows = active & budget.left()
            if not rows.any():
                break
            rows, active, rho = self._iterate(x, objective, state, rows, active, rho)
            iterations += rows.long()
        return self._result(self.clamp(x + state["delta"]), objective, iterations, budget.spent(), clean=x)

    def box_mask(self, point: Tensor, g: Tensor) -> Tensor:
        """``g`` with the components zeroed where ``point`` sits at a clip bound and a step along ``-g`` (which
        lowers the residual) would leave the box."""
        low, high = self.clip
        blocked = ((point <= low) & (g > 0)) | ((point >= high) & (g < 0))
        return g.masked_fill(blocked, 0.0)

    def _iterate(
        self, x: Tensor, objective: VerificationObjective, state: dict, rows: Tensor, active: Tensor, rho: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One trust-region step for ``rows``; updates ``state`` in place, returns (evaluated rows, active, rho)."""
        delta = state["delta"]
        r = state["r"]
        g = state["g"]
        won = state["won"]
        eta = torch.where(rows & won, state["eta"] * self.eta_decay, state["eta"])  # after the flip: aim closer
        state["eta"] = eta
        # before the flip "root" solves for the increment alone: -delta's pull would undo the progress made
        pull = won[:, None] | (self.before_flip == "project")
        d = self.subproblem(delta * pull, r, g, rho, eta)
        norm = delta.norm(dim=1)
        predicted = torch.where(won, norm - (delta + d).norm(dim=1), -(g * d).sum(1))
        stalled = predicted <= self.tol * torch.where(won, norm, r + eta)  # the model sees no progress
        active = active & ~stalled
        rows = rows & ~stalled
        if not rows.any():
            return rows, active, rho
        candidate = self.clamp(x + delta + d) - x
        r_new, g_new = objective.residual_and_grad(x + candidate, rows)
        g_new = self.box_mask(x + candidate, g_new)
        won_new = objective.is_success(r_new)
        corrected = torch.zeros_like(rows)
        if self.correct:
            candidate, r_new, g_new, won_new, corrected = self._correct(
                x, objective, rows & won & ~won_new, candidate, r_new, g_new, won_new, eta, norm, state
            )
        kept = torch.where(won_new, norm - candidate.norm(dim=1), torch.full_like(norm, -float("inf")))
        ratio = torch.where(won, kept, r - r_new) / predicted.clamp(min=1e-30)
        # a corrected point is the step the model did not predict: taken when smaller, radius left as it was
        accept = rows & ((ratio > self.accept) | (won_new & ~won) | corrected)
        judged = rows & ~corrected
        binding = d.norm(dim=1) >= 0.99 * rho
        stuck = rows & ~accept & (rho <= self.rho_min)
        rho = torch.where(judged & (ratio >= self.good) & binding, rho * self.grow, rho)
        rho = torch.where(judged & (ratio < self.bad), rho * self.shrink, rho).clamp(self.rho_min, self.rho_max)
        # stuck short of the boundary: aim deeper past it (at most the clean residual), from the linearised distance
        deeper = (eta * self.restart).minimum(state["r0"])
        restart = stuck & ~won & (deeper > eta) if self.restart > 1 else torch.zeros_like(stuck)
        if restart.any():
            eta = torch.where(restart, deeper, eta)
            rho = torch.where(restart, self._radius0(r, g, eta, linearised=True), rho)
        state["eta"] = torch.where(accept & won_new & ~won, state["eta0"], eta)  # flipped: back to the set overshoot
        state["delta"] = torch.where(accept[:, None], candidate, delta)
        state["r"] = torch.where(accept, r_new, r)
        state["g"] = torch.where(accept[:, None], g_new, g)
        state["won"] = torch.where(accept, won_new, won)
        return rows, active & ~(stuck & ~restart), rho

    def _correct(
        self,
        x: Tensor,
        objective: VerificationObjective,
        lost: Tensor,
        candidate: Tensor,
        r_new: Tensor,
        g_new: Tensor,
        won_new: Tensor,
        eta: Tensor,
        norm: Tensor,
        state: dict,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Second-order correction of walk steps that lost the flip: one Gauss-Newton step from the rejected
        candidate back to its own linearised boundary, ``c - (r(c) + eta) g(c) / |g(c)|^2`` (one more gradient
        evaluation, within the budget); kept in place of the candidate when it is a success smaller than the
        incumbent, so the curvature of the boundary no longer shrinks the radius to its floor."""
        g_norm2 = (g_new * g_new).sum(1)
        lost = lost & state["budget"].left() & (g_norm2 > 1e-30)
        if not lost.any():
            return candidate, r_new, g_new, won_new, lost
        step = -((r_new + eta) / g_norm2.clamp(min=1e-30)).nan_to_num(0.0, 0.0, 0.0)[:, None] * g_new
        corrected = self.clamp(x + candidate + step) - x
        r_c, g_c = objective.residual_and_grad(x + corrected, lost)
        better = lost & objective.is_success(r_c) & (corrected.norm(dim=1) < norm)
        g_c = self.box_mask(x + corrected, g_c)
        return (
            torch.where(better[:, None], corrected, candidate),
            torch.where(better, r_c, r_new),
            torch.where(better[:, None], g_c, g_new),
            won_new | better,
            better,
        )
