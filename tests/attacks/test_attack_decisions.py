"""Decisions that survive review: a success inside the victim's float noise is not counted, the searches respect a
binding [-1, 1] box exactly, and SSR at its configured overshoot still reaches the minimum (annealed)."""

from __future__ import annotations

import pytest
import torch
from helpers import BatchNoisyVictim, LinearVictim, linear_case

from attacks import DDN, FMN, Attack, AttackResult, BoundarySearch, GaussNewton, QuasiNewton, StepSizeRegularized
from attacks import VerificationObjective as Objective


class Returns(Attack):
    """An 'attack' that returns the given adversarial waveforms (to test the final decision alone)."""

    def __init__(self, adversarial: torch.Tensor) -> None:
        super().__init__()
        self.adversarial = adversarial

    def perturb(self, x: torch.Tensor, objective: Objective) -> AttackResult:
        ones = torch.ones(len(x), dtype=torch.long)
        return self._result(self.adversarial, objective, ones, ones)


def test_a_marginal_success_that_reverses_when_scored_alone_is_not_counted():
    w = torch.tensor([1.0, 0.0], dtype=torch.float64)
    x = torch.tensor([[0.2, 0.0], [0.3, 0.0]], dtype=torch.float64)
    # non-target trials (label 0): success = accepted (s >= theta); trial 0 sits 5e-7 below theta alone
    theta = 0.4 + 5e-7
    adversarial = torch.tensor([[0.4, 0.0], [0.5, 0.0]], dtype=torch.float64)
    objective = Objective(BatchNoisyVictim(w), torch.zeros(2, 1), torch.tensor([0, 0]), theta)
    batched = objective.is_success(objective.residual(adversarial))
    assert batched.tolist() == [True, True]  # in a batch of two, trial 0 gains 1e-6: a "success" of 5e-7
    result = Returns(adversarial).perturb(x, objective)
    assert result.success.tolist() == [False, True]  # re-scored alone it is rejected: not counted
    guarded = Objective(BatchNoisyVictim(w), torch.zeros(2, 1), torch.tensor([0, 0]), theta, kappa=1e-5)
    assert guarded.is_success(guarded.residual(adversarial)).tolist() == [False, True]  # the margin refuses it


def boxed_case(blocked: int = 32):
    """Linear trials where ``blocked`` samples per trial sit at the clip bound on the side the attack would push
    them: the minimal perturbation then moves only the free samples, ``(σ s + κ) / |w_free|`` exactly."""
    x, objective, _ = linear_case(t=256)
    x, w = x.double(), objective.victim.w.double()
    sigma = objective.sigma.double()
    gen = torch.Generator().manual_seed(5)
    at_bound = torch.zeros_like(x, dtype=torch.bool)
    for i in range(len(x)):
        at_bound[i, torch.randperm(x.shape[1], generator=gen)[:blocked]] = True
    push = -sigma[:, None] * w  # the direction that lowers the residual
    x = torch.where(at_bound, push.sign(), x)
    free_w = torch.where(at_bound, 0.0, w.expand_as(x))
    margin = 0.5 + torch.rand(len(x), generator=gen, dtype=torch.float64)
    s = (x * w).sum(1)
    x = x + ((sigma * margin - s) / (free_w * free_w).sum(1))[:, None] * free_w  # decision right by the margin
    assert x.abs().max() <= 1 and torch.equal(x.abs() == 1, at_bound)
    kappa = 1e-6
    objective = Objective(LinearVictim(w), objective.enrol.double(), objective.labels, 0.0, kappa=kappa)
    minimal = (margin + kappa) / free_w.norm(dim=1)
    unboxed = (margin + kappa) / w.norm()
    assert (minimal > 1.05 * unboxed).all()  # the box binds: ignoring it would find a 5 %+ smaller δ
    return x, objective, minimal


@pytest.mark.parametrize(
    "attack",
    [StepSizeRegularized(eta_decay=0.5), StepSizeRegularized(eta=1e-5), QuasiNewton(warm_start=GaussNewton(steps=10))],
    ids=["ssr", "ssr_small_eta", "qn"],
)
def test_searches_find_the_exact_minimum_with_the_box_binding(attack):
    x, objective, minimal = boxed_case()
    result = attack.perturb(x, objective)
    assert result.success.all() and result.adversarial.abs().max() <= 1
    assert torch.allclose((result.adversarial - x).norm(dim=1), minimal, rtol=1e-4)  # unmasked SSR: 1.5e-4 off


def test_ssr_overshoot_fixed_by_default_and_annealed_on_request():
    """The default keeps the overshoot fixed: the result sits on the shifted boundary, at most ``eta`` (relative)
    past the exact minimum (the configured 0.001: within 0.15 %; 0.01: more than 0.5 % out); annealing reaches the
    exact minimum on a linear victim (it measured worse on curved real victims: docs/attacks/ssr_overshoot.md)."""
    x, objective, minimal = linear_case()
    configured = StepSizeRegularized(eta=0.001).perturb(x, objective)
    loose = StepSizeRegularized(eta=0.01).perturb(x, objective)
    annealed = StepSizeRegularized(eta=0.01, eta_decay=0.5).perturb(x, objective)
    rho_configured, rho_loose, rho = ((r.adversarial - x).norm(dim=1) for r in (configured, loose, annealed))
    assert configured.success.all() and loose.success.all() and annealed.success.all()
    assert (rho_configured >= minimal * (1 - 1e-5)).all() and (rho_configured <= 1.0015 * minimal).all()
    assert (rho_loose > 1.005 * minimal).all()
    assert torch.allclose(rho, minimal, rtol=1e-3)


def test_minimum_norm_baselines_respect_the_margin():
    x, objective, minimal = linear_case()
    kappa = 1e-3
    objective = Objective(objective.victim, objective.enrol, objective.labels, 0.0, kappa=kappa)
    w = objective.victim.w
    for attack in (DDN(steps=100), FMN(steps=100), StepSizeRegularized(), QuasiNewton()):
        result = attack.perturb(x, objective)
        margin = -objective.sigma * (result.adversarial @ w)
        assert result.success.all() and (margin >= kappa * (1 - 1e-3)).all(), type(attack).__name__
        assert ((result.adversarial - x).norm(dim=1) >= (minimal + kappa / w.norm()) * (1 - 1e-4)).all()


def test_boundary_search_never_loses_the_inner_success_to_batch_noise():
    w = torch.tensor([1.0, 0.0], dtype=torch.float64)
    x = torch.tensor([[0.2, 0.0], [0.2, 0.0]], dtype=torch.float64)
    theta = 0.35 + 5e-7  # the bisection's midpoint (score 0.35) is accepted only in a batch of two
    adversarial = torch.tensor([[0.5, 0.0], [0.5, 0.0]], dtype=torch.float64)
    objective = Objective(BatchNoisyVictim(w), torch.zeros(2, 1), torch.tensor([0, 0]), theta)  # kappa = 0
    result = BoundarySearch(Returns(adversarial), steps=1).perturb(x, objective)
    assert result.success.all() and torch.equal(result.adversarial, adversarial)  # the inner success, kept


def test_a_non_finite_score_is_no_success():
    objective = Objective(LinearVictim(torch.ones(2)), torch.zeros(2, 1), torch.tensor([1, 0]), 0.0)
    nan = float("nan")
    assert objective.flipped(torch.tensor([nan, nan])).tolist() == [False, False]
    assert objective.flipped(torch.tensor([-1.0, 1.0])).tolist() == [True, True]


def test_quasi_newton_refines_after_the_level_that_flipped():
    x, objective, minimal = linear_case()
    stop = QuasiNewton(c=100.0, eta=0.01, eta_decay=None).perturb(x, objective)
    x, objective, minimal = linear_case()
    refine = QuasiNewton(c=100.0, eta=0.01).perturb(x, objective)
    rho_stop, rho = ((r.adversarial - x).norm(dim=1) / minimal for r in (stop, refine))
    assert stop.success.all() and refine.success.all()
    assert (rho_stop > 1 + 4e-3).all()  # stops at the first level's optimum, eta / 2 past the boundary
    assert (rho < 1 + 5e-4).all() and (refine.grad_evals > stop.grad_evals).all()  # later levels flip, closer
