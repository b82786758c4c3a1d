"""Quasi-Newton minimum-norm search, the second-order method of the quasi-Newton attack paper (APSIPA ASC;
reconstructed here, see DESIGN.md): L-BFGS / BFGS on a penalised minimum-norm problem, warm-started from
Gauss-Newton."""

from __future__ import annotations

import torch
from torch import Tensor

from attacks.base import Attack, AttackResult, VerificationObjective
from attacks.gauss_newton import GaussNewton
from nets.speaker.contract import check_arg


class QuasiNewton(Attack):
    """Quasi-Newton minimum-norm search, L2: L-BFGS (or BFGS) on a penalised problem, penalty continuation.

    Minimises ``f(delta) = 1/2 |delta|^2 + c max(0, r(x + delta) + eta)^2``; keeps the smallest successful
    perturbation per trial, each trial solved on its own.

    ``torch.optim.LBFGS`` supplies the two-loop recursion, the strong-Wolfe line search and the curvature-pair skip
    (pairs with y^T s <= 1e-10 are dropped). A dense BFGS matrix is out of reach for waveforms (T^2 entries), so
    ``method="bfgs"`` keeps every curvature pair of each inner solve (the two-loop recursion with unbounded memory
    equals BFGS started from the scaled identity), while ``"lbfgs"`` keeps the last ``history`` pairs. The penalty
    grows (c x ``c_growth``) until the flip holds; ``eta`` (relative to the clean residual) puts the penalised
    optimum just past the boundary, where ``eta = 0`` would stop short of it.

    Args:
        c: initial penalty weight, > 0 (1.0).
        c_growth: penalty growth per outer step, > 1 (10.0).
        outer_steps: penalty continuation steps, >= 1 (4).
        lbfgs_iterations: L-BFGS iterations per outer step, >= 1 (20).
        history: curvature pairs kept by ``"lbfgs"``, >= 1 (10).
        eta: overshoot relative to the clean residual, >= 0 (0.01).
        warm_start: a ``GaussNewton`` run first, whose result starts the search (None: start at x).
        method: ``"lbfgs"`` or ``"bfgs"`` ("lbfgs").
        clip: valid waveform range ``(low, high)`` ((-1, 1)).

    Shapes: ``x [B, T]`` -> ``adversarial [B, T]``.

    Example: ``QuasiNewton(method="bfgs", warm_start=GaussNewton(steps=10)).perturb(test, objective)``.
    """

    def __init__(
        self,
        c: float = 1.0,
        c_growth: float = 10.0,
        outer_steps: int = 4,
        lbfgs_iterations: int = 20,
        history: int = 10,
        eta: float = 0.01,
        warm_start: GaussNewton | None = None,
        method: str = "lbfgs",
        clip: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        super().__init__(clip)
        check_arg("method", method, method in ("lbfgs", "bfgs"), "'lbfgs' or 'bfgs'")
        check_arg("c", c, c > 0, "> 0")
        check_arg("c_growth", c_growth, c_growth > 1, "> 1")
        check_arg("outer_steps", outer_steps, outer_steps >= 1, ">= 1")
        check_arg("lbfgs_iterations", lbfgs_iterations, lbfgs_iterations >= 1, ">= 1")
        check_arg("history", history, history >= 1, ">= 1")
        check_arg("eta", eta, eta >= 0, ">= 0")
        self.method = method
        self.c, self.c_growth, self.outer_steps = c, c_growth, outer_steps
        self.lbfgs_iterations, self.history, self.eta, self.warm_start = lbfgs_iterations, history, eta, warm_start

    def _solve_one(
        self, x: Tensor, delta0: Tensor, objective: VerificationObjective, i: int
    ) -> tuple[Tensor, int, int]:
        single = objective.subset(slice(i, i + 1))

        def residual(d: Tensor) -> Tensor:
            return single.residual(self.clamp(x + d))[0]

        with torch.no_grad():
            eta = self.eta * residual(torch.zeros_like(x)).abs().clamp(min=1e-3)
        delta = delta0.clone().requires_grad_(True)
        best, evals, iters, c = None, 0, 0, self.c
        for _ in range(self.outer_steps):
            memory = self.history if self.method == "lbfgs" else self.lbfgs_iterations
            optimizer = torch.optim.LBFGS([delta], max_iter=self.lbfgs_iterations, history_size=memory,
                                          line_search_fn="strong_wolfe")  # fmt: skip

            def closure(optimizer: torch.optim.LBFGS = optimizer, c: float = c) -> Tensor:
                nonlocal evals
                optimizer.zero_grad()
                loss = 0.5 * delta.pow(2).sum() + c * torch.relu(residual(delta) + eta) ** 2
                loss.backward()
                evals += 1
                return loss

            with torch.enable_grad():
                optimizer.step(closure)
            iters += optimizer.state[optimizer._params[0]].get("n_iter", 0)
            with torch.no_grad():
                if single.is_success(residual(delta)[None])[0] and (best is None or delta.norm() < best.norm()):
                    best = delta.detach().clone()
                    break  # the penalty only grows from here: a larger c cannot shrink the successful step
            c *= self.c_growth
        return (best if best is not None else delta.detach()), iters, evals

    def perturb(self, x: Tensor, objective: VerificationObjective) -> AttackResult:
        start = torch.zeros_like(x)
        iterations = torch.zeros(len(x), dtype=torch.long, device=x.device)
        evals = torch.zeros(len(x), dtype=torch.long, device=x.device)
        if self.warm_start is not None:
            warm = self.warm_start.perturb(x, objective)
            start, iterations, evals = warm.adversarial - x, warm.iterations.clone(), warm.grad_evals.clone()
        deltas = []
        for i in range(len(x)):
            d, it, ev = self._solve_one(x[i : i + 1], start[i : i + 1], objective, i)
            deltas.append(d)
            iterations[i] += it
            evals[i] += ev
        return self._result(self.clamp(x + torch.cat(deltas)), objective, iterations, evals)
