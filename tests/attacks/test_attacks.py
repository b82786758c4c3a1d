"""Attack invariants (clip range, budgets, truthful success), exact per-trial gradient counts, device and precision
handling, argument checks; the minimum-norm searches' exactness is in test_second_order_attacks.py."""

import pytest
import torch
from helpers import BatchNoisyVictim, LinearVictim, linear_case

import attacks
from attacks import (
    FGSM,
    PGD,
    CarliniWagnerL2,
    GaussNewton,
    MFCCIvec,
    QuasiNewton,
    StepSizeRegularized,
    VerificationObjective,
)


class CountingVictim(LinearVictim):
    """Counts, per trial, the backward passes that reach its input; the enrolment 'waveform' is the trial index."""

    def __init__(self, w: torch.Tensor, n: int) -> None:
        super().__init__(w)
        self.backward = torch.zeros(n, dtype=torch.long)

    def compare(self, enrol_embedding: torch.Tensor, test_embedding: torch.Tensor) -> torch.Tensor:
        if test_embedding.requires_grad:
            ids = enrol_embedding[:, 0].long()

            def count(grad: torch.Tensor) -> None:
                self.backward.index_add_(0, ids, torch.ones_like(ids))

            test_embedding.register_hook(count)
        return super().compare(enrol_embedding, test_embedding)


ALL_ATTACKS = {
    "fgsm": lambda: FGSM(epsilon=0.05),
    "pgd_random_start": lambda: PGD(epsilon=0.05, step_size=0.01, steps=20, random_start=True),
    "cw": lambda: CarliniWagnerL2(search_steps=2, steps=20),
    "gauss_newton": lambda: GaussNewton(steps=5),
    "qn": lambda: QuasiNewton(outer_steps=2, iterations=5, warm_start=GaussNewton(steps=2)),
    "qn_bfgs": lambda: QuasiNewton(outer_steps=2, iterations=5, method="bfgs"),
    "ssr": lambda: StepSizeRegularized(steps=10),
    "ssr_linear_start": lambda: StepSizeRegularized(steps=10, rho0=None, rho0_fraction=0.5),
}


@pytest.mark.parametrize("name", ALL_ATTACKS)
def test_every_attack_stays_in_range_and_reports_success_truthfully(name):
    x, objective, _ = linear_case(victim=BatchNoisyVictim)  # batched scores move by 1e-6 per companion
    x = (x * 9).clamp(-1, 1)  # samples at the clip edges
    result = ALL_ATTACKS[name]().perturb(x, objective)
    assert result.adversarial.min() >= -1 and result.adversarial.max() <= 1
    assert result.grad_evals.shape == (len(x),) and (result.grad_evals >= 1).all()
    # success is the decision of each trial scored alone (accept <=> s >= theta = 0), computed here independently
    scores = result.adversarial @ objective.victim.w
    assert torch.equal(result.success, (scores >= 0) != (objective.labels == 1))


BUDGETED = {
    "gauss_newton": lambda b: GaussNewton(steps=20, early_stop=False, max_grad_evals=b),
    "qn_warm": lambda b: QuasiNewton(warm_start=GaussNewton(steps=20, early_stop=False), max_grad_evals=b),
    "qn_bfgs": lambda b: QuasiNewton(method="bfgs", c=1.0, max_grad_evals=b),  # c = 1: level 1 does not flip
    "ssr": lambda b: StepSizeRegularized(rho0=1e-4, max_grad_evals=b),
    "cw": lambda b: CarliniWagnerL2(search_steps=3, steps=100, max_grad_evals=b),
    "pgd": lambda b: PGD(epsilon=1.0, step_size=1e-3, steps=b, norm="l2"),
}


@pytest.mark.parametrize("name", BUDGETED)
@pytest.mark.parametrize("budget", [1, 7])
def test_gradient_budgets_are_kept_and_counted_exactly(name, budget):
    """``grad_evals`` per trial equals the backward passes the victim saw for that trial, never above the budget;
    every trial here needs more than 7 (the radius starts at 1e-4, CW keeps searching, Gauss-Newton does not stop
    early, the first penalty level does not flip, ...)."""
    x, objective, _ = linear_case(victim=lambda w: CountingVictim(w, 4))
    result = BUDGETED[name](budget).perturb(x, objective)
    assert torch.equal(result.grad_evals, objective.victim.backward)
    assert torch.equal(result.grad_evals, torch.full((4,), budget))
    assert result.adversarial.min() >= -1 and result.adversarial.max() <= 1


def test_a_trial_that_stops_early_stops_counting():
    x, objective, _ = linear_case(victim=lambda w: CountingVictim(w, 4))
    x[1] = x[1] - 2 * (x[1] @ objective.victim.w) * objective.victim.w / objective.victim.w.dot(objective.victim.w)
    result = GaussNewton(steps=20, max_grad_evals=15).perturb(x, objective)  # trial 1 starts already flipped
    assert result.grad_evals.tolist() == [2, 1, 2, 2] == objective.victim.backward.tolist()
    x, objective, _ = linear_case(victim=lambda w: CountingVictim(w, 4))
    result = StepSizeRegularized(rho0=0.01, eta=1e-5).perturb(x, objective)
    assert torch.equal(result.grad_evals, objective.victim.backward) and (result.grad_evals < 10).all()


def test_quasi_newton_warm_start_spends_from_the_same_budget():
    x, objective, _ = linear_case(victim=lambda w: CountingVictim(w, 4))
    attack = QuasiNewton(warm_start=GaussNewton(steps=20, early_stop=False), max_grad_evals=5)
    result = attack.perturb(x, objective)
    assert torch.equal(result.grad_evals, torch.full((4,), 5)) and attack.warm_start.max_grad_evals is None
    assert result.success.all()  # the warm start's flip survives a budget that leaves nothing for L-BFGS


class FrameVictim(LinearVictim):
    """A ``FeatureDomainVictim`` stub: frames are the waveform cut in 8-sample rows."""

    def frames(self, wave: torch.Tensor) -> torch.Tensor:
        return wave.reshape(len(wave), -1, 8)

    def embed_frames(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.flatten(1)


DEVICE_CASES = {
    **ALL_ATTACKS,
    "gauss_newton_budget": lambda: GaussNewton(steps=5, max_grad_evals=3),
    "qn_budget": lambda: QuasiNewton(outer_steps=2, iterations=5, warm_start=GaussNewton(), max_grad_evals=9),
    "pgd_linf": lambda: PGD(epsilon=0.05, step_size=0.01, steps=5, random_start=True),
    "mfcc_ivec": lambda: MFCCIvec(),
    "ddn": lambda: attacks.DDN(steps=5),
    "fmn": lambda: attacks.FMN(steps=5),
}


@pytest.mark.parametrize("name", DEVICE_CASES)
def test_attacks_create_their_state_on_the_input_device(name):
    """Run with ``meta`` as the default device: a tensor the attack creates without naming the input's device
    lands on meta and fails when combined with the (cpu) trial tensors, as cpu state fails next to a CUDA victim."""
    x, objective, _ = linear_case(victim=FrameVictim)
    with torch.device("meta"):
        result = DEVICE_CASES[name]().perturb(x, objective)
    tensors = [result.adversarial, result.success, result.iterations, result.grad_evals, *result.extra.values()]
    assert all(t.device.type == "cpu" for t in tensors if isinstance(t, torch.Tensor))
    assert result.adversarial.dtype == x.dtype


def test_attacks_refuse_half_precision_victims_and_inputs():
    from nets.speaker import ECAPATDNN

    victim = ECAPATDNN(channels=16, embedding_dim=8, scale=2).eval().half()
    with pytest.raises(ValueError, match=r"victim parameter '.+' is torch.float16: attacks need float32 or float64"):
        VerificationObjective(victim, torch.zeros(2, 8000), torch.tensor([1, 0]), 0.0)
    x, objective, _ = linear_case()
    with pytest.raises(ValueError, match=r"attacked input is torch.bfloat16.*below torch.bfloat16 resolution"):
        GaussNewton().perturb(x.bfloat16(), objective)
    with pytest.raises(ValueError, match=r"enrolment embedding is torch.float16"):  # a victim that is no module
        VerificationObjective(
            objective.victim, torch.zeros(4, 1), objective.labels, 0.0, enrol_embedding=torch.zeros(4, 64).half()
        )


def test_random_start_is_reproducible_for_a_seed_and_varies_across_seeds():
    x, objective, _ = linear_case()
    runs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        attack = PGD(epsilon=0.05, step_size=0.01, steps=1, random_start=True, early_stop=False)
        runs.append(attack.perturb(x, objective).adversarial)
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_success_follows_the_decision_rule_at_the_threshold():
    """Accept <=> s >= theta: a target trial scored exactly theta is still accepted (no flip), a non-target one is
    accepted (a flip); with a margin kappa > 0, r = 0 is a flip by kappa on either side."""
    victim = LinearVictim(torch.tensor([1.0]))
    x = torch.tensor([[0.5], [0.5]])  # both score exactly 0.5 = theta
    exact = VerificationObjective(victim, torch.zeros(2, 1), torch.tensor([1, 0]), threshold=0.5)
    assert exact.is_success(exact.residual(x)).tolist() == [False, True]
    margin = VerificationObjective(victim, torch.zeros(2, 1), torch.tensor([1, 0]), threshold=0.5, kappa=0.1)
    at_margin = torch.tensor([[0.4], [0.6]])  # 0.1 below / above theta
    assert margin.residual(at_margin).abs().max() < 1e-6
    assert margin.is_success(torch.zeros(2)).tolist() == [True, True]
    assert FGSM(epsilon=0.0 + 1e-9).perturb(x, exact).success.tolist() == [False, True]


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: FGSM(epsilon=0.0), r"epsilon=0.0: expected > 0"),
        (lambda: FGSM(clip=(1.0, -1.0)), r"clip=\(1.0, -1.0\): expected \(low, high\) with low < high"),
        (lambda: PGD(norm="l1"), r"norm='l1': expected 'linf' or 'l2'"),
        (lambda: PGD(steps=0), r"steps=0: expected >= 1"),
        (lambda: PGD(step_size=-1.0), r"step_size=-1.0: expected > 0"),
        (lambda: CarliniWagnerL2(search_steps=0), r"search_steps=0: expected >= 1"),
        (lambda: CarliniWagnerL2(kappa_cw=-0.1), r"kappa_cw=-0.1: expected >= 0"),
        (lambda: CarliniWagnerL2(max_grad_evals=0), r"max_grad_evals=0: expected None or >= 1"),
        (lambda: GaussNewton(damping=1.5), r"damping=1.5: expected in \(0, 1\]"),
        (lambda: GaussNewton(update="newton"), r"update='newton': expected 'root' or 'project'"),
        (lambda: QuasiNewton(c_growth=1.0), r"c_growth=1.0: expected > 1"),
        (lambda: QuasiNewton(method="sr1"), r"method='sr1': expected 'lbfgs' or 'bfgs'"),
        (lambda: QuasiNewton(line_search_evals=0), r"line_search_evals=0: expected >= 1"),
        (lambda: StepSizeRegularized(rho_min=0.1, rho_max=0.01), r"rho_max=0.01: expected >= rho_min=0.1"),
        (lambda: StepSizeRegularized(good=0.2, bad=0.3), r"good=0.2: expected > bad=0.3"),
        (lambda: StepSizeRegularized(accept=0.5), r"accept=0.5: expected in \[0, bad=0.25\]"),
        (lambda: StepSizeRegularized(shrink=1.0), r"shrink=1.0: expected in \(0, 1\)"),
        (lambda: StepSizeRegularized(inner_steps=0), r"inner_steps=0: expected >= 1"),
        (lambda: MFCCIvec(voiced_quantile=1.0), r"voiced_quantile=1.0: expected in \[0, 1\)"),
    ],
)
def test_out_of_range_arguments_are_named(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_attacks_name_themselves_for_checkpoints():
    from nets.speaker.contract import config

    spec = config(QuasiNewton(method="bfgs", warm_start=GaussNewton(steps=3)))
    assert spec["class_path"] == "attacks.quasi_newton.QuasiNewton" and spec["init_args"]["method"] == "bfgs"
    assert spec["init_args"]["warm_start"] == {
        "class_path": "attacks.gauss_newton.GaussNewton",
        "init_args": {
            "steps": 3,
            "damping": 1.0,
            "overshoot": 0.02,
            "update": "root",
            "early_stop": True,
            "max_grad_evals": None,
            "clip": (-1.0, 1.0),
        },
    }


def test_cached_enrolment_embedding_scores_like_the_victim():
    from nets.speaker import ECAPATDNN

    torch.manual_seed(0)
    victim = ECAPATDNN(channels=16, embedding_dim=8, scale=2).eval()
    enrol, test = torch.rand(3, 8000) - 0.5, torch.rand(3, 8000) - 0.5
    objective = VerificationObjective(victim, enrol, torch.tensor([1, 0, 1]), 0.5)
    with torch.no_grad():
        assert torch.allclose(objective.score(test), victim.score(enrol, test), atol=1e-6)
        assert torch.allclose(
            objective.subset(slice(1, 2)).score(test[1:2]), victim.score(enrol[1:2], test[1:2]), atol=1e-6
        )
    r, g = objective.residual_and_grad(test, torch.tensor([False, True, False]))  # one trial evaluated alone
    r_all, g_all = objective.residual_and_grad(test)
    assert r[[0, 2]].isnan().all() and (g[[0, 2]] == 0).all() and objective.grad_evals.tolist() == [1, 2, 1]
    assert torch.allclose(r[1], r_all[1], atol=1e-6) and torch.allclose(g[1], g_all[1], atol=1e-6)


def test_pgd_never_goes_below_the_minimum():
    x, objective, minimal = linear_case()
    result = PGD(epsilon=2.0, step_size=0.02, steps=200, norm="l2").perturb(x, objective)
    assert result.success.all()
    assert ((result.adversarial - x).norm(dim=1) >= minimal * (1 - 1e-5)).all()


@pytest.mark.parametrize(
    "attack",
    [
        FGSM(epsilon=0.05),
        PGD(epsilon=0.05, step_size=0.01, steps=20),
        PGD(epsilon=0.3, step_size=0.05, norm="l2"),
        PGD(epsilon=0.3, step_size=0.05, norm="l2", random_start=True),
    ],
    ids=["fgsm", "pgd_linf", "pgd_l2", "pgd_l2_random_start"],
)
def test_budget_and_clip_range_respected(attack):
    x, objective, _ = linear_case()
    x = (x * 9).clamp(-1, 1)  # near the clip edges
    result = attack.perturb(x, objective)
    delta = result.adversarial - x
    assert result.adversarial.min() >= -1 and result.adversarial.max() <= 1
    if attack.norm == "linf" if isinstance(attack, PGD) else True:
        assert delta.abs().max() <= attack.epsilon + 1e-6
    else:
        assert (delta.norm(dim=1) <= attack.epsilon + 1e-5).all()


def test_carlini_wagner_succeeds_inside_the_box_and_not_below_the_minimum():
    x, objective, minimal = linear_case()
    result = CarliniWagnerL2(c=1.0, search_steps=4, steps=100, lr=0.01).perturb(x, objective)
    assert result.success.all() and result.adversarial.abs().max() <= 1
    norms = (result.adversarial - x).norm(dim=1)
    assert (norms >= minimal * (1 - 1e-4)).all() and (norms <= minimal * 1.01).all()
    assert CarliniWagnerL2(search_steps=3, steps=100, max_grad_evals=200).round_steps() == [67, 67, 66]
    assert CarliniWagnerL2(search_steps=3, steps=10, max_grad_evals=200).round_steps() == [10, 10, 10]


def test_mfcc_ivec_refuses_neural_victims_and_perturbs_only_voiced_frames():
    from nets.speaker import ECAPATDNN, IVector

    torch.manual_seed(0)
    enrol, test = torch.rand(2, 8000) - 0.5, torch.rand(2, 8000) - 0.5
    neural = VerificationObjective(
        ECAPATDNN(channels=16, embedding_dim=8, scale=2).eval(), enrol, torch.tensor([1, 0]), 0.5
    )
    with pytest.raises(TypeError, match="MFCC-ivec attacks i-vector victims.*ECAPATDNN"):
        MFCCIvec().perturb(test, neural)
    victim = IVector(n_components=4, rank=3, n_mfcc=5)
    objective = VerificationObjective(victim, enrol, torch.tensor([1, 0]), 0.0)
    result = MFCCIvec(epsilon=0.5).perturb(test, objective)
    change = (result.extra["features"] - victim.frames(test)).abs().amax(-1)
    assert torch.equal(change > 0, result.extra["voiced"]) and change.max() == pytest.approx(0.5, abs=1e-5)
    assert torch.equal(result.adversarial, test)  # feature-domain attack: the waveform is untouched
    assert result.grad_evals.tolist() == objective.grad_evals.tolist() == [1, 1]


def test_per_trial_seeds_make_random_starts_independent_of_the_batch():
    x, objective, _ = linear_case()
    seeded = VerificationObjective(objective.victim, objective.enrol, objective.labels, 0.0, seeds=torch.arange(4) + 9)
    attack = PGD(epsilon=0.05, step_size=0.01, steps=1, random_start=True, early_stop=False)
    together = attack.perturb(x, seeded).adversarial
    for i in range(4):  # each trial alone, after a different global seed: the same draw as in the batch
        torch.manual_seed(100 + i)
        alone = attack.perturb(x[i : i + 1], seeded.subset(slice(i, i + 1))).adversarial
        assert torch.equal(alone[0], together[i])
    assert not torch.equal(together[0], together[1])  # trials draw differently


class NonEmptyVictim(LinearVictim):
    """Refuses an empty batch, as convolutional victims do."""

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        assert len(wave) > 0, "empty batch reached the victim"
        return super().embed(wave)


def test_quasi_newton_whose_warm_start_spends_the_whole_budget_returns_the_warm_start():
    x, objective, _ = linear_case(victim=NonEmptyVictim)
    warm = GaussNewton(steps=10, max_grad_evals=2).perturb(x, linear_case()[1])
    result = QuasiNewton(max_grad_evals=2, warm_start=GaussNewton(steps=10)).perturb(x, objective)
    assert (result.grad_evals <= 2).all()
    assert torch.equal(result.success, warm.success) and torch.allclose(result.adversarial, warm.adversarial)
