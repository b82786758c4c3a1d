"""Generic boundary search after a fixed-budget attack (FGSM, BIM, PGD, CW): bisection on the scale of its
perturbation, the post-processing that lets a table compare fixed-budget attacks with minimum-norm ones when it
marks so (the same bisection between the clean input and a starting point as FMN's warm start, Pintor et al.,
NeurIPS 2021, https://arxiv.org/abs/2102.12827)."""

from __future__ import annotations

import torch
from torch import Tensor

from attacks.base import Attack, AttackResult, Incumbent, VerificationObjective
from nets.checks import check_arg


class BoundarySearch(Attack):
    """An inner attack, then per trial the smallest ``t`` in [0, 1] such that ``clip(x + t delta)`` still flips the
    decision (``delta`` the inner perturbation), by bisection; L2 and L-inf norms both shrink by ``t``.

    Only trials the inner attack flipped are searched (``t = 1`` is a success, the bracket's upper end); the
    others keep the inner result. Every bisection point is a forward evaluation (no gradient), counted per trial in
    ``extra["forward_evals"]``; ``grad_evals`` and ``iterations`` are the inner attack's. The result is always a
    point where the flip was observed, so success is never lost and the norm never grows. ``t`` per trial is in
    ``extra["scale"]``. Tables name it ``name`` (e.g. "PGD + boundary search"); ``domain`` stays the inner one.

    Args:
        attack: the inner, waveform-domain attack, e.g. ``PGD(norm="l2", ...)``; its ``clip`` is used.
        steps: bisection rounds, >= 1; ``t`` is found within ``2^-steps`` (10). The gradient budget is the inner
            attack's.

    Shapes: ``x [B, T]`` -> ``adversarial [B, T]``; ``extra["forward_evals"]``, ``extra["scale"]`` ``[B]``.

    Example: ``BoundarySearch(PGD(epsilon=0.5, step_size=0.05, norm="l2"), steps=10).perturb(test, objective)``.
    """

    def __init__(self, attack: Attack, steps: int = 10) -> None:
        check_arg("attack", type(attack).__name__, attack.domain == "waveform", "a waveform-domain attack")
        check_arg("steps", steps, steps >= 1, ">= 1")
        super().__init__(attack.clip)
        self.attack = attack
        self.steps = steps

    @property
    def name(self) -> str:
        """How tables name it: the inner attack's class + boundary search."""
        return f"{type(self.attack).__name__} + boundary search"

    def perturb(self, x: Tensor, objective: VerificationObjective) -> AttackResult:
        inner = self.attack.perturb(x, objective)
        delta = inner.adversarial - x
        searched = inner.success.clone()
        low = torch.zeros(len(x), dtype=x.dtype, device=x.device)  # t = 0 is the clean input
        best = Incumbent(inner.adversarial, torch.ones_like(low))  # its norm: the scale t, 1 the inner result
        evals = torch.zeros(len(x), dtype=torch.long, device=x.device)
        with torch.no_grad():
            for _ in range(self.steps if searched.any() else 0):
                mid = (low + best.norm) / 2
                candidate = self.clamp(x + mid[:, None] * delta)
                won = objective.is_success(objective.residual(candidate)) & searched
                evals += searched.long()
                best.offer(candidate, mid, won)
                low = torch.where(searched & ~won, mid, low)
        if searched.any():  # a bisection point accepted on a batched score may not flip alone: keep the inner one
            lost = inner.success & ~objective.flipped_alone(best.point)
            best.point = torch.where(lost[:, None], inner.adversarial, best.point)
            best.norm = torch.where(lost, torch.ones_like(best.norm), best.norm)
        extra = {**inner.extra, "forward_evals": evals, "scale": best.norm}
        success = objective.flipped_alone(best.point) if searched.any() else inner.success.clone()
        return AttackResult(best.point, success, inner.iterations, inner.grad_evals, extra, clean=x)
