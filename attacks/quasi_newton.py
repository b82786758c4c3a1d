"""Quasi-Newton minimum-norm search: L-BFGS on ``f(delta) = 1/2 |delta|^2 + c max(0, r(x + delta) + eta)^2``.

torch.optim.LBFGS supplies the L-BFGS two-loop recursion, the strong-Wolfe line search and the curvature-pair
skip (pairs with y^T s <= 1e-10 are dropped). A dense BFGS matrix is out of reach for waveforms (T^2 entries),
so ``method="bfgs"`` keeps every curvature pair of each inner solve (the two-loop recursion with unbounded memory equals
BFGS started from the scaled identity, torch re-scaling H0 by s^T y / y^T y each iteration), while
``method="lbfgs"`` keeps the last ``history`` pairs. The penalty is continued (c x ``c_growth``) until the flip
holds; ``eta`` (relative to the clean residual) puts the penalised optimum just past the boundary, since with
``eta = 0`` it would stop short of it. Warm start from the Gauss-Newton result (``warm_start``), as in the paper's
reconstruction. Each trial is solved on its own.

Args: ``method`` (``"lbfgs"`` or ``"bfgs"``), ``c`` (1.0), ``c_growth`` (10), ``outer_steps`` (4), ``lbfgs_iterations`` (20), ``history`` (10),
``eta`` (0.01), ``warm_start`` (a GaussNewton or None), ``clip``. Shapes: ``x [B, T]`` -> ``[B, T]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attacks.base import Attack, AttackResult, VerificationObjective
from attacks.gauss_newton import GaussNewton


class QuasiNewton(Attack):
    """Penalty continuation with L-BFGS inner solves; keeps the smallest successful perturbation per trial."""

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
        if method not in ("lbfgs", "bfgs"):
            raise ValueError(f"method={method!r} is not 'lbfgs' or 'bfgs'")
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
                if residual(delta) <= 0 and (best is None or delta.norm() < best.norm()):
                    best = delta.detach().clone()
                    break  # the penalty only grows from here: a larger c cannot shrink the successful step
            c *= self.c_growth
        return (best if best is not None else delta.detach()), iters, evals

    def perturb(self, x: Tensor, objective: VerificationObjective) -> AttackResult:
        start = torch.zeros_like(x)
        iterations = torch.zeros(len(x), dtype=torch.long)
        evals = torch.zeros(len(x), dtype=torch.long)
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
