"""Quasi-Newton minimum-norm search, the second-order method of the quasi-Newton attack paper (APSIPA ASC):
L-BFGS or BFGS on a penalised minimum-norm problem with penalty continuation, warm-started from Gauss-Newton.
Reconstructed here from the method's description: the penalty form, its continuation (``c``, ``c_growth``,
``eta``, ``eta_decay``), the line search and the budget accounting are this project's choices, all configurable.
All trials of a batch are solved together, each with its own curvature pairs, line search, penalty level and
budget (the penalised problem and its line search: ``attacks.penalty_search``)."""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from attacks.base import Attack, AttackResult, VerificationObjective, check_budget
from attacks.gauss_newton import GaussNewton
from attacks.penalty_search import PenaltyRun, Point
from nets.checks import check_arg


def two_loop(grad: Tensor, pairs: list[tuple[Tensor, Tensor, Tensor]], gamma: Tensor) -> Tensor:
    """``H grad`` by the L-BFGS two-loop recursion over curvature pairs ``(s [B, T], y [B, T], rho [B])``, oldest
    first (``rho = 1 / y^T s``, 0 where a pair does not belong to a trial), with ``H_0 = gamma I``."""
    q = grad.clone()
    alphas = []
    for s, y, rho in reversed(pairs):
        alpha = rho * (s * q).sum(1)
        q = q - alpha[:, None] * y
        alphas.append(alpha)
    q = gamma[:, None] * q
    for (s, y, rho), alpha in zip(pairs, reversed(alphas)):
        q = q + (alpha - rho * (y * q).sum(1))[:, None] * s
    return q


class QuasiNewton(Attack):
    """Quasi-Newton minimum-norm search, L2: L-BFGS or BFGS on a penalised problem, penalty continuation.

    Minimises ``f(delta) = 1/2 |delta|^2 + c max(0, r(clip(x + delta)) + eta)^2`` with a strong-Wolfe line search
    (Nocedal & Wright Alg. 3.5 / 3.6, cubic interpolation, initial step 1); after each penalty level a trial whose
    iterate flipped stops, the others continue with ``c x c_growth``. ``eta`` (relative to the clean residual)
    puts the penalised optimum just past the boundary. With ``normalize_penalty`` the penalised optimum of a
    linear scorer sits at ``r + eta = (r_0 + eta) / (1 + 2 c)``: the trial flips at the first level where that is
    below ``eta``, i.e. ``c >~ r_0 / (2 eta) = 50`` with the default ``eta`` (without it, ``c`` depends on the
    victim's score and gradient scale). The default ``c = 100`` puts the first level's optimum just past the
    boundary, so a warm-started search minimises ``|delta|`` along the boundary from its first iteration; ``c = 1``
    spends two levels on the clean side first, which a small budget cannot afford (docs/attacks/design.md). The
    incumbent (``attacks.base.Incumbent``) is the smallest successful perturbation seen at any evaluation, the warm
    start's included, so a trial the warm start flipped never ends with a larger one.

    ``method="lbfgs"``: the last ``history`` curvature pairs, ``H_0 = (s^T y / y^T y) I`` from the newest pair,
    memory cleared at each penalty level. ``method="bfgs"``: BFGS proper, matrix-free: every pair since the start,
    across penalty levels, with ``H_0 = I`` (the Hessian of 1/2 |delta|^2); the two-loop recursion over all pairs
    with a fixed ``H_0`` equals the dense BFGS update, without its T x T matrix (memory: 2 x outer_steps x
    iterations x T values per trial). Pairs with ``y^T s <= 1e-10`` are skipped by both.

    Budget: every evaluation of ``f`` is one gradient evaluation (line-search trials included), plus one at the
    start and the warm start's; ``max_grad_evals`` caps their total per trial (the warm start gets at most that
    much), ``None``: at most ``outer_steps x iterations x line_search_evals + 1`` plus the warm start.

    Args:
        c: initial penalty weight, > 0; unit-free with ``normalize_penalty`` (100.0).
        c_growth: penalty growth per outer step, > 1 (10.0).
        outer_steps: penalty continuation steps, >= 1 (4).
        iterations: quasi-Newton iterations per penalty level, >= 1 (20).
        history: curvature pairs kept by ``"lbfgs"``, >= 1 (10).
        eta: overshoot relative to the clean residual (no absolute floor), >= 0 (0.01).
        eta_decay: after a penalty level that ends flipped, the trial continues with ``eta`` x ``eta_decay`` and
            ``c`` / ``eta_decay`` (the penalised optimum stays just past the boundary, ever closer to it; the
            incumbent keeps the smallest success), in (0, 1); ``None``: it stops there (the earlier rule, which
            left budget unspent) (0.1).
        warm_start: a ``GaussNewton`` run first, whose result starts the search (None: start at x).
        method: ``"lbfgs"`` or ``"bfgs"`` ("lbfgs").
        line_search_evals: evaluations per line search, >= 1 (10).
        normalize_penalty: divide ``c`` by ``|dr/dx|^2`` at the start point, i.e. measure the residual in units of
            linearised distance, so that ``c`` means the same for every victim and trial; False: ``c`` in inverse
            squared score units (True).
        max_grad_evals: gradient evaluations per trial, None or >= 1 (None).
        clip: valid waveform range ``(low, high)`` ((-1, 1)).

    Shapes: ``x [B, T]`` -> ``adversarial [B, T]``; ``iterations`` (warm start's + quasi-Newton steps),
    ``grad_evals`` ``[B]``.

    Example: ``QuasiNewton(method="bfgs", warm_start=GaussNewton(steps=10)).perturb(test, objective)``.
    """

    def __init__(
        self,
        c: float = 100.0,
        c_growth: float = 10.0,
        outer_steps: int = 4,
        iterations: int = 20,
        history: int = 10,
        eta: float = 0.01,
        eta_decay: float | None = 0.1,
        warm_start: GaussNewton | None = None,
        method: str = "lbfgs",
        line_search_evals: int = 10,
        normalize_penalty: bool = True,
        max_grad_evals: int | None = None,
        clip: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        super().__init__(clip)
        check_arg("method", method, method in ("lbfgs", "bfgs"), "'lbfgs' or 'bfgs'")
        check_arg("c", c, c > 0, "> 0")
        check_arg("c_growth", c_growth, c_growth > 1, "> 1")
        check_arg("outer_steps", outer_steps, outer_steps >= 1, ">= 1")
        check_arg("iterations", iterations, iterations >= 1, ">= 1")
        check_arg("history", history, history >= 1, ">= 1")
        check_arg("eta", eta, eta >= 0, ">= 0")
        check_arg("eta_decay", eta_decay, eta_decay is None or 0 < eta_decay < 1, "None or in (0, 1)")
        check_arg("line_search_evals", line_search_evals, line_search_evals >= 1, ">= 1")
        check_budget(max_grad_evals)
        self.method = method
        self.c = c
        self.c_growth = c_growth
        self.eta = eta
        self.warm_start = warm_start
        self.outer_steps = outer_steps
        self.iterations = iterations
        self.history = history
        self.line_search_evals = line_search_evals
        self.eta_decay = eta_decay
        self.max_grad_evals = max_grad_evals
        self.normalize_penalty = normalize_penalty

    def perturb(self, x: Tensor, objective: VerificationObjective) -> AttackResult:
        run = PenaltyRun(self, x, objective)
        delta = torch.zeros_like(x)
        iterations = torch.zeros(len(x), dtype=torch.long, device=x.device)
        if self.warm_start is not None:
            warm = self.warm_start
            if self.max_grad_evals is not None:  # the warm start spends from the same budget
                warm = copy.copy(warm)
                warm.max_grad_evals = min(self.max_grad_evals, warm.max_grad_evals or self.max_grad_evals)
            result = warm.perturb(x, objective)
            delta = result.adversarial - x
            iterations = result.iterations.clone()
            run.offer(result.adversarial, result.success)
        active = run.budget.left()
        if not active.any():  # the warm start spent every trial's budget: its result is the answer
            final = run.best.or_else(self.clamp(x + delta))
            return self._result(final, objective, iterations, run.budget.spent(), clean=x)
        here = run.evaluate(delta, active)
        if self.normalize_penalty:  # c / |g_r|^2: the residual in units of linearised distance, c unit-free
            run.c = run.c / (here.r_grad * here.r_grad).sum(1).clamp(min=1e-30)
            here = run.penalised(here.delta, here.r, here.r_grad)
        pairs: list[tuple[Tensor, Tensor, Tensor]] = []
        for level in range(self.outer_steps):
            if level > 0:
                run.c = torch.where(active, run.c * self.c_growth, run.c)
                here = run.penalised(here.delta, here.r, here.r_grad)  # same point, new penalty: no evaluation
            if self.method == "lbfgs":
                pairs = []
            here = self._level(run, here, pairs, active, iterations)
            flipped = active & objective.is_success(here.r)
            if self.eta_decay is None:
                active &= ~flipped  # flipped at the end of a level: a larger c only goes deeper
            else:  # refine: a smaller overshoot moves the penalised optimum toward the boundary
                # eta x decay with c / decay keeps the linearised optimum (r0 + eta) / (1 + 2c) - eta on the flipped
                # side, ever closer to the boundary
                run.eta = torch.where(flipped, run.eta * self.eta_decay, run.eta)
                run.c = torch.where(flipped, run.c / self.eta_decay / self.c_growth, run.c)  # x c_growth below
        final = run.best.or_else(self.clamp(x + here.delta))
        return self._result(final, objective, iterations, run.budget.spent(), clean=x)

    def _level(self, run: PenaltyRun, here: Point, pairs: list, active: Tensor, iterations: Tensor) -> Point:
        """Quasi-Newton iterations at one penalty level for the ``active`` trials; ``pairs`` and ``iterations``
        are updated in place."""
        level = active.clone()
        for _ in range(self.iterations):
            rows = level & run.budget.left()
            if not rows.any():
                break
            p = -two_loop(here.grad, pairs, self._gamma(pairs, here.f))
            p = torch.where(((here.grad * p).sum(1) < 0)[:, None], p, -here.grad)  # keep a descent direction
            slope = (here.grad * p).sum(1)
            level &= -slope > 10 * torch.finfo(slope.dtype).eps * here.f.abs()  # below f's resolution: converged
            rows &= level
            if not rows.any():
                break
            first = torch.ones_like(rows) if not pairs else torch.stack([rho == 0 for *_, rho in pairs]).all(0)
            step = torch.where(first, run.model_step(here, p).clamp(max=1.0), torch.ones_like(slope))
            new, moved = run.line_search(here, p, rows, self.line_search_evals, step)
            iterations += moved.long()
            s = new.delta - here.delta
            y = new.grad - here.grad
            self._remember(pairs, s, y, moved & ((s * y).sum(1) > 1e-10))
            level &= moved & ((here.f - new.f).abs() > 1e-9 * new.f.abs())  # stalled trials wait for a new c
            here = new
        return here

    def _gamma(self, pairs: list, like: Tensor) -> Tensor:
        """``H_0`` scale per trial: 1 for BFGS; ``s^T y / y^T y`` of the newest pair for L-BFGS."""
        gamma = torch.ones_like(like)
        if self.method == "lbfgs":
            for _, y, rho in pairs:
                gamma = torch.where(rho > 0, 1 / (rho * (y * y).sum(1)).clamp(min=1e-30), gamma)
        return gamma

    def _remember(self, pairs: list, s: Tensor, y: Tensor, valid: Tensor) -> None:
        """Append a curvature pair for the ``valid`` trials; L-BFGS then forgets each trial's oldest pairs
        beyond ``history``."""
        rho = torch.where(valid, 1 / (s * y).sum(1), torch.zeros_like(valid, dtype=s.dtype))
        pairs.append((torch.where(valid[:, None], s, 0.0), torch.where(valid[:, None], y, 0.0), rho))
        if self.method != "lbfgs":
            return
        excess = torch.stack([pair[2] > 0 for pair in pairs]).sum(0) - self.history
        for i, (s_i, y_i, rho_i) in enumerate(pairs):
            drop = (rho_i > 0) & (excess > 0)
            pairs[i] = (s_i, y_i, torch.where(drop, 0.0, rho_i))
            excess = excess - drop.long()
        alive = torch.stack([pair[2] > 0 for pair in pairs]).any(1).tolist()
        pairs[:] = [pair for pair, keep in zip(pairs, alive) if keep]
