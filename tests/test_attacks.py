"""Attack invariants, and exactness on a linear scorer where the minimal L2 flip is known: |s - theta| / |w|."""

import pytest
import torch

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


class LinearVictim:
    """s(enrol, x) = w^T x (the enrolment is ignored): a ``SpeakerVictim`` whose embedding is the waveform."""

    def __init__(self, w: torch.Tensor) -> None:
        self.w, self.embedding_dim = w, len(w)

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        return wave

    def compare(self, enrol_embedding: torch.Tensor, test_embedding: torch.Tensor) -> torch.Tensor:
        return test_embedding @ self.w

    def score(self, enrol: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
        return self.compare(self.embed(enrol), self.embed(test))


def linear_case(n=4, t=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(t, generator=gen)
    x = (torch.rand(n, t, generator=gen) - 0.5) * 0.2
    labels = torch.tensor([1, 0, 1, 0])[:n]
    theta = 0.0
    s = x @ w
    x = x + ((0.5 + torch.rand(n, generator=gen)) * (labels * 2 - 1) - s)[:, None] * w / w.dot(
        w
    )  # clean decision right
    objective = VerificationObjective(LinearVictim(w), torch.zeros(n, 1), labels, theta)
    minimal = (x @ w - theta).abs() / w.norm()
    return x, objective, minimal


@pytest.mark.parametrize("update", ["root", "project"])
def test_gauss_newton_finds_the_exact_minimal_perturbation(update):
    x, objective, minimal = linear_case()
    result = GaussNewton(steps=5, overshoot=1e-4, update=update).perturb(x, objective)
    assert result.success.all()
    assert torch.allclose((result.adversarial - x).norm(dim=1), minimal, rtol=1e-3)
    assert (result.iterations == 1).all()  # one linearised step is exact on a linear scorer


@pytest.mark.parametrize("method", ["lbfgs", "bfgs"])
def test_quasi_newton_finds_the_exact_minimal_perturbation(method):
    x, objective, minimal = linear_case()
    result = QuasiNewton(eta=1e-3, c=10.0, method=method).perturb(x, objective)
    assert result.success.all()
    assert torch.allclose((result.adversarial - x).norm(dim=1), minimal, rtol=1e-2)
    assert (result.grad_evals > 0).all()


ALL_ATTACKS = {
    "fgsm": lambda: FGSM(epsilon=0.05),
    "pgd_random_start": lambda: PGD(epsilon=0.05, step_size=0.01, steps=20, random_start=True),
    "cw": lambda: CarliniWagnerL2(search_steps=2, steps=20),
    "gauss_newton": lambda: GaussNewton(steps=5),
    "qn": lambda: QuasiNewton(outer_steps=2, lbfgs_iterations=5, warm_start=GaussNewton(steps=2)),
    "ssr": lambda: StepSizeRegularized(steps=10),
    "ssr_linear_start": lambda: StepSizeRegularized(steps=10, rho0=None, rho0_fraction=0.5),
}


@pytest.mark.parametrize("name", ALL_ATTACKS)
def test_every_attack_stays_in_range_and_reports_success_truthfully(name):
    x, objective, _ = linear_case()
    x = (x * 9).clamp(-1, 1)  # samples at the clip edges
    result = ALL_ATTACKS[name]().perturb(x, objective)
    assert result.adversarial.min() >= -1 and result.adversarial.max() <= 1
    assert result.grad_evals.shape == (len(x),) and (result.grad_evals >= 1).all()
    scores = result.adversarial @ objective.victim.w  # the decision flipped: accept <=> s >= theta = 0
    assert torch.equal(result.success, (scores >= 0) != (objective.labels == 1))


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
        (lambda: GaussNewton(damping=1.5), r"damping=1.5: expected in \(0, 1\]"),
        (lambda: GaussNewton(update="newton"), r"update='newton': expected 'root' or 'project'"),
        (lambda: QuasiNewton(c_growth=1.0), r"c_growth=1.0: expected > 1"),
        (lambda: QuasiNewton(method="sr1"), r"method='sr1': expected 'lbfgs' or 'bfgs'"),
        (lambda: StepSizeRegularized(rho_min=0.1, rho_max=0.01), r"rho_max=0.01: expected >= rho_min=0.1"),
        (lambda: StepSizeRegularized(good=0.2, bad=0.3), r"good=0.2: expected > bad=0.3"),
        (lambda: StepSizeRegularized(shrink=1.0), r"shrink=1.0: expected in \(0, 1\)"),
        (lambda: MFCCIvec(voiced_quantile=1.0), r"voiced_quantile=1.0: expected in \[0, 1\)"),
    ],
)  # fmt: skip
def test_out_of_range_arguments_are_named(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_attacks_name_themselves_for_checkpoints():
    from nets.speaker.contract import config

    spec = config(QuasiNewton(method="bfgs", warm_start=GaussNewton(steps=3)))
    assert spec["class_path"] == "attacks.quasi_newton.QuasiNewton" and spec["init_args"]["method"] == "bfgs"
    assert spec["init_args"]["warm_start"] == {
        "class_path": "attacks.gauss_newton.GaussNewton",
        "init_args": {"steps": 3, "damping": 1.0, "overshoot": 0.02, "update": "root", "early_stop": True,
                      "clip": (-1.0, 1.0)},
    }  # fmt: skip


def test_cached_enrolment_embedding_scores_like_the_victim():
    from nets.speaker import ECAPATDNN

    torch.manual_seed(0)
    victim = ECAPATDNN(channels=16, embedding_dim=8, scale=2).eval()
    enrol, test = torch.rand(3, 8000) - 0.5, torch.rand(3, 8000) - 0.5
    objective = VerificationObjective(victim, enrol, torch.tensor([1, 0, 1]), 0.5)
    assert objective.enrol_embedding is not None
    with torch.no_grad():
        assert torch.allclose(objective.score(test), victim.score(enrol, test), atol=1e-6)
        assert torch.allclose(objective.subset(slice(1, 2)).score(test[1:2]), victim.score(enrol[1:2], test[1:2]),
                              atol=1e-6)  # fmt: skip


def test_pgd_never_goes_below_the_minimum():
    x, objective, minimal = linear_case()
    result = PGD(epsilon=2.0, step_size=0.02, steps=200, norm="l2").perturb(x, objective)
    assert result.success.all()
    assert ((result.adversarial - x).norm(dim=1) >= minimal * (1 - 1e-5)).all()


@pytest.mark.parametrize(
    "attack", [FGSM(epsilon=0.05), PGD(epsilon=0.05, step_size=0.01, steps=20), PGD(epsilon=0.3, step_size=0.05, norm="l2")],
    ids=["fgsm", "pgd_linf", "pgd_l2"],
)  # fmt: skip
def test_budget_and_clip_range_respected(attack):
    x, objective, _ = linear_case()
    x = x * 9  # near the clip edges
    result = attack.perturb(x.clamp(-1, 1), objective)
    delta = result.adversarial - x.clamp(-1, 1)
    assert result.adversarial.min() >= -1 and result.adversarial.max() <= 1
    if getattr(attack, "norm", "linf") == "linf":
        assert delta.abs().max() <= attack.epsilon + 1e-6
    else:
        assert (delta.norm(dim=1) <= attack.epsilon + 1e-5).all()


def test_step_size_regularized_succeeds_near_the_minimum_with_few_gradients():
    x, objective, minimal = linear_case()
    result = StepSizeRegularized(rho0=0.01).perturb(x, objective)
    assert result.success.all()
    norms = (result.adversarial - x).norm(dim=1)
    assert (norms >= minimal * (1 - 1e-5)).all() and (norms <= minimal * 1.5).all()
    linear_start = StepSizeRegularized(rho0=None).perturb(x, objective)  # starts at the exact distance
    assert linear_start.success.all() and (linear_start.grad_evals <= 3).all()
    fixed = PGD(epsilon=2.0, step_size=0.01, steps=500, norm="l2").perturb(x, objective)
    assert fixed.success.all() and (result.grad_evals < fixed.grad_evals).all()  # radius adapts; a fixed step cannot


def test_carlini_wagner_succeeds_inside_the_box_and_not_below_the_minimum():
    x, objective, minimal = linear_case()
    result = CarliniWagnerL2(c=1.0, search_steps=4, steps=100, lr=0.01).perturb(x, objective)
    assert result.success.all() and result.adversarial.abs().max() <= 1
    assert ((result.adversarial - x).norm(dim=1) >= minimal * (1 - 1e-4)).all()


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
    result = MFCCIvec(epsilon=0.5).perturb(test, VerificationObjective(victim, enrol, torch.tensor([1, 0]), 0.0))
    change = (result.extra["features"] - victim.frames(test)).abs().amax(-1)
    assert torch.equal(change > 0, result.extra["voiced"]) and change.max() == pytest.approx(0.5, abs=1e-5)
    assert torch.equal(result.adversarial, test)  # feature-domain attack: the waveform is untouched
