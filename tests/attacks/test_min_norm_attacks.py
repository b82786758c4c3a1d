"""DDN, FMN and the boundary search: exactness on a linear scorer, where the minimal L2 flip is |s - theta| / |w|,
budgets, invariants (clip range, truthful success), a random-weight ECAPA, and the boundary search from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import QUIET, LinearVictim

from attacks import DDN, FGSM, FMN, PGD, BoundarySearch, MFCCIvec, VerificationObjective
from coadv.compare import configs
from coadv.constants import speaker_args
from nets.speaker.contract import config


def linear_case(rho=(0.002, 0.006), t=256, seed=0, dtype=torch.float32):
    """Four trials (target, non-target, target, non-target), decided correctly, whose minimal flip is a fraction
    ``rho`` (drawn in the range) of ``|x|``; returns ``x``, the objective and the minimal norms."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(t, generator=gen, dtype=torch.float64)
    x = torch.randn(4, t, generator=gen, dtype=torch.float64) * 0.1
    labels = torch.tensor([1, 0, 1, 0])
    minimal = (rho[0] + (rho[1] - rho[0]) * torch.rand(4, generator=gen, dtype=torch.float64)) * x.norm(dim=1)
    x = x + ((labels * 2 - 1) * minimal * w.norm() - x @ w)[:, None] * w / w.dot(w)  # s = sigma |w| minimal
    x, w = x.to(dtype), w.to(dtype)
    objective = VerificationObjective(LinearVictim(w), torch.zeros(4, 1, dtype=dtype), labels, 0.0)
    return x, objective, (x @ w).abs() / w.norm()


def flipped(x_adv: torch.Tensor, objective: VerificationObjective) -> torch.Tensor:
    """The decision at theta = 0 changed (accept <=> s >= 0), recomputed from the scorer."""
    return (x_adv @ objective.victim.w >= 0) != (objective.labels == 1)


def norms(result, x):
    return (result.adversarial - x).norm(dim=1)


EXACT = {"ddn": lambda: DDN(), "fmn": lambda: FMN(overshoot=1e-3)}


@pytest.mark.parametrize("rho", [(0.002, 0.006), (0.1, 0.3)], ids=["rho_1e-3", "rho_0.2"])
@pytest.mark.parametrize("name", EXACT)
def test_min_norm_attacks_reach_the_exact_minimum(name, rho):
    x, objective, minimal = linear_case(rho)
    result = EXACT[name]().perturb(x, objective)
    assert result.success.all() and torch.equal(result.success, flipped(result.adversarial, objective))
    assert (norms(result, x) >= minimal * (1 - 1e-5)).all()
    assert (norms(result, x) <= minimal * 1.01).all(), norms(result, x) / minimal


def test_fmn_at_paper_settings_reports_only_genuine_flips_never_below_the_minimum():
    """Without overshoot the linear estimate puts the iterate on the boundary of a linear scorer, where rounding
    decides the side: whatever it reports must still be true and never below the minimum."""
    x, objective, minimal = linear_case()
    result = FMN().perturb(x, objective)
    assert torch.equal(result.success, flipped(result.adversarial, objective))
    won = result.success
    assert int(won.sum()) >= 3  # rounding may leave one trial on the clean side of the boundary, not more
    assert (norms(result, x)[won] >= minimal[won] * (1 - 1e-5)).all()
    assert (norms(result, x)[won] <= minimal[won] * 1.01).all()
    assert torch.equal(result.adversarial[~won], x[~won])  # never flipped: the clean input, as the reference code


def test_fmn_first_radius_is_the_linear_distance_estimate():
    """Step 1 at x: not a success, radius = (1 + overshoot) |r| / |g| = 1.5 d*; the step alpha_0 = 2 d* is cut to it;
    step 2 sees that success, the only one of two gradient evaluations."""
    x, objective, minimal = linear_case()
    result = FMN(steps=2, overshoot=0.5, alpha_init=2.0).perturb(x, objective)
    assert result.success.all()
    assert torch.allclose(norms(result, x), 1.5 * minimal, rtol=1e-4)


@pytest.mark.parametrize("attack", [DDN, lambda **k: FMN(overshoot=1e-3, **k)], ids=["ddn", "fmn"])
def test_more_gradient_evaluations_never_hurt_and_are_counted(attack):
    x, objective, minimal = linear_case()
    previous = None
    for budget in (10, 30, 100):
        before = torch.as_tensor(objective.grad_evals).clone()
        result = attack(steps=budget).perturb(x, objective)
        assert result.grad_evals.tolist() == [budget] * 4 and result.iterations.tolist() == [budget] * 4
        assert (torch.as_tensor(objective.grad_evals) - before == budget).all()  # the objective's own count
        current = torch.where(result.success, norms(result, x), torch.inf)
        if previous is not None:
            assert (current <= previous * (1 + 1e-6)).all(), (budget, current / minimal, previous / minimal)
        previous = current
    assert (previous <= minimal * 1.01).all()
    capped = attack(steps=100, max_grad_evals=7).perturb(x, objective)
    assert capped.grad_evals.tolist() == [7] * 4


def box_minimum(x: torch.Tensor, objective: VerificationObjective) -> torch.Tensor:
    """Minimal flip norms of the linear scorer inside [-1, 1]: the KKT point of min |delta|^2 s.t. the flip and the
    box is ``delta_i = clip(-lam sigma w_i, -1 - x_i, 1 - x_i)``, ``lam`` found by bisection (float64)."""
    x, w, sigma = x.double(), objective.victim.w.double(), objective.sigma.double()[:, None]
    lo, hi = torch.zeros(len(x), 1, dtype=torch.float64), torch.full((len(x), 1), 1e3, dtype=torch.float64)
    for _ in range(200):
        lam = (lo + hi) / 2
        delta = torch.maximum(torch.minimum(-lam * sigma * w, 1 - x), -1 - x)
        ok = (sigma[:, 0] * ((x + delta) @ w) < 0)[:, None]
        lo, hi = torch.where(ok, lo, lam), torch.where(ok, lam, hi)
    return torch.maximum(torch.minimum(-hi * sigma * w, 1 - x), -1 - x).norm(dim=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", EXACT)
def test_clip_range_dtype_and_the_minimum_inside_the_box(name, dtype):
    x, objective, _ = linear_case((0.01, 0.05), dtype=dtype)
    x = (x * 9).clamp(-1, 1)  # a quarter of the samples at the clip edges, decisions unchanged
    minimal = box_minimum(x, objective).to(dtype)
    assert (minimal > 1.03 * (x @ objective.victim.w).abs() / objective.victim.w.norm()).all()  # the box binds (4-10 %)
    result = EXACT[name]().perturb(x, objective)
    assert result.adversarial.dtype == dtype and result.adversarial.abs().max() <= 1
    assert result.success.all() and torch.equal(result.success, flipped(result.adversarial, objective))
    assert (norms(result, x) >= minimal * (1 - 1e-5)).all() and (norms(result, x) <= minimal * 1.01).all()


def test_fmn_drops_gradient_components_the_clip_would_undo():
    """With the raw gradient the radius estimate ignores the box and FMN stays short of the boundary (2 of 4 trials
    flip in 10 steps with overshoot, none without); without the blocked components all 4 are exact in 10 steps."""
    x, objective, _ = linear_case((0.01, 0.05))
    x = (x * 9).clamp(-1, 1)
    minimal = box_minimum(x, objective).float()
    result = FMN(steps=10, overshoot=1e-3).perturb(x, objective)
    assert result.success.all() and (norms(result, x) <= minimal * 1.005).all()
    g = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    kept = FMN().movable(torch.tensor([[1.0, 1.0, -1.0, 0.5]]), g)  # descent -g: samples 1 and 2 would leave
    assert kept.tolist() == [[1.0, 0.0, 0.0, -1.0]]


@pytest.mark.parametrize("name", EXACT)
def test_awkward_inputs_silence_and_a_trial_already_flipped(name):
    """The length unit is the distance estimate, not |x|: a silent test utterance is attacked like any other."""
    objective = VerificationObjective(LinearVictim(torch.ones(4)), torch.zeros(2, 1), torch.tensor([1, 0]), -0.2)
    x = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.1, 0.0, 0.0, 0.0]])  # silent target (s = 0 >= -0.2: accepted);
    result = EXACT[name]().perturb(x, objective)  # the non-target is accepted already: flipped, no perturbation
    assert result.success.tolist() == [True, True] and torch.equal(result.adversarial[1], x[1])
    assert 0.1 * (1 - 1e-5) <= result.adversarial[0].norm() <= 0.1 * 1.01  # |r| / |w| = 0.2 / 2


@pytest.mark.parametrize("attack", [DDN, FMN], ids=["ddn", "fmn"])
def test_a_flat_victim_gives_x_back_without_nans(attack):
    """Zero gradient everywhere (w = 0, s = 0 >= theta = -1: a target accepted for good): no direction, no flip."""
    objective = VerificationObjective(LinearVictim(torch.zeros(8)), torch.zeros(2, 1), torch.tensor([1, 1]), -1.0)
    x = torch.rand(2, 8) - 0.5
    result = attack(steps=5).perturb(x, objective)
    assert torch.equal(result.adversarial, x) and result.success.tolist() == [False, False]


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: DDN(steps=0), r"steps=0: expected >= 1"),
        (lambda: DDN(gamma=1.0), r"gamma=1.0: expected in \(0, 1\)"),
        (lambda: DDN(init_epsilon=0.0), r"init_epsilon=0.0: expected > 0"),
        (lambda: DDN(alpha=-1.0), r"alpha=-1.0: expected > 0"),
        (lambda: DDN(alpha_final=1.5), r"alpha_final=1.5: expected in \(0, 1\]"),
        (lambda: DDN(max_grad_evals=0), r"max_grad_evals=0: expected None or >= 1"),
        (lambda: FMN(alpha_init=-0.01), r"alpha_init=-0.01: expected > 0"),
        (lambda: FMN(gamma=0.05, gamma_final=0.1), r"gamma_final=0.1: expected in \(0, gamma=0.05\]"),
        (lambda: FMN(overshoot=-1e-3), r"overshoot=-0.001: expected >= 0"),
        (lambda: FMN(clip=(1.0, -1.0)), r"clip=\(1.0, -1.0\): expected \(low, high\) with low < high"),
        (lambda: BoundarySearch(PGD(), steps=0), r"steps=0: expected >= 1"),
        (lambda: BoundarySearch(MFCCIvec()), r"attack='MFCCIvec': expected a waveform-domain attack"),
    ],
)
def test_out_of_range_arguments_are_named(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_attacks_name_themselves_for_checkpoints():
    assert config(DDN(steps=30)) == {
        "class_path": "attacks.ddn.DDN",
        "init_args": {
            "steps": 30,
            "gamma": 0.05,
            "init_epsilon": 1.0,
            "alpha": 1.0,
            "alpha_final": 0.01,
            "max_grad_evals": None,
            "clip": (-1.0, 1.0),
        },
    }
    spec = config(BoundarySearch(PGD(norm="l2"), steps=5))
    assert spec["class_path"] == "attacks.boundary_search.BoundarySearch" and spec["init_args"]["steps"] == 5
    assert spec["init_args"]["attack"]["class_path"] == "attacks.pgd.PGD"
    assert spec["init_args"]["attack"]["init_args"]["norm"] == "l2"
    assert config(FMN())["init_args"]["gamma_final"] == 0.001


def test_boundary_search_brings_pgd_l2_to_the_minimum_within_the_bisection_tolerance():
    x, objective, minimal = linear_case((0.1, 0.3))
    pgd = PGD(epsilon=2.0, step_size=0.05, steps=100, norm="l2")
    inner = pgd.perturb(x, objective)
    result = BoundarySearch(pgd, steps=12).perturb(x, objective)
    assert inner.success.all() and (norms(inner, x) > minimal * 1.04).all()  # PGD alone overshoots by 4-8 %
    assert torch.equal(result.success, inner.success) and torch.equal(
        flipped(result.adversarial, objective), result.success
    )
    tolerance = norms(inner, x) * 2.0**-12 + 1e-6  # PGD's delta here is along w: scaling it reaches the minimum
    assert (norms(result, x) >= minimal * (1 - 1e-5)).all() and (norms(result, x) <= minimal + tolerance).all()
    assert torch.equal(result.grad_evals, inner.grad_evals) and result.extra["forward_evals"].tolist() == [12] * 4
    assert torch.allclose(result.extra["scale"] * norms(inner, x), norms(result, x), rtol=1e-4)


def test_boundary_search_leaves_failures_alone_and_never_grows_either_norm():
    x, objective, minimal = linear_case((0.1, 0.3))
    budget = float(minimal.sort().values[1:3].mean())  # between the 2nd and 3rd smallest minimum: two trials fail
    pgd = PGD(epsilon=budget, step_size=budget / 4, steps=20, norm="l2")
    inner, result = pgd.perturb(x, objective), BoundarySearch(pgd, steps=8).perturb(x, objective)
    assert inner.success.sum() == 2 and torch.equal(result.success, inner.success)
    assert torch.equal(result.adversarial[~inner.success], inner.adversarial[~inner.success])
    assert result.extra["forward_evals"].tolist() == (inner.success.long() * 8).tolist()
    fgsm = FGSM(epsilon=0.05)
    inner, result = fgsm.perturb(x, objective), BoundarySearch(fgsm).perturb(x, objective)
    assert inner.success.any() and torch.equal(result.success, flipped(result.adversarial, objective))
    assert (norms(result, x) <= norms(inner, x)).all()
    assert ((result.adversarial - x).abs().amax(1) <= (inner.adversarial - x).abs().amax(1)).all()
    assert BoundarySearch(fgsm).name == "FGSM + boundary search" and BoundarySearch(fgsm).domain == "waveform"


def test_random_weight_ecapa_flips_and_the_searches_stay_honest():
    from nets.speaker import ECAPATDNN

    torch.manual_seed(0)
    victim = ECAPATDNN(channels=16, embedding_dim=8, scale=2).eval().requires_grad_(False)
    enrol, test = (torch.rand(4, 8000) - 0.5) * 0.2, (torch.rand(4, 8000) - 0.5) * 0.2
    with torch.no_grad():
        clean = victim.score(enrol, test)
    theta = float(clean.sort().values[1:3].mean())  # between scores: two targets and two non-targets, all correct
    labels = (clean >= theta).long()
    rho = {}
    pgd = PGD(epsilon=0.5, step_size=0.05, steps=50, norm="l2")
    for name, attack in {"ddn": DDN(), "fmn": FMN(), "pgd": pgd, "pgd_bs": BoundarySearch(pgd)}.items():
        # a margin above this victim's batch noise (~1e-7 here): successes survive scoring alone
        result = attack.perturb(test, VerificationObjective(victim, enrol, labels, theta, kappa=1e-6))
        with torch.no_grad():  # success is the decision of each trial scored alone
            after = torch.cat([victim.score(enrol[i : i + 1], result.adversarial[i : i + 1]) for i in range(4)])
        assert torch.equal(result.success, (after >= theta) != (labels == 1)) and result.adversarial.abs().max() <= 1
        assert result.success.all(), name  # regression guard: every trial flips with this seed
        rho[name] = norms(result, test) / test.norm(dim=1)
    assert (rho["pgd_bs"] <= rho["pgd"]).all()
    assert (rho["fmn"] < 0.01).all() and (rho["ddn"] < 0.01).all()  # well below PGD's ball, rho(0.5) ~ 0.09


@pytest.fixture(scope="module")
def ecapa_checkpoint(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny synthetic corpus and the ECAPA victim of the composed ecapa_synth configs with random weights,
    validated on it (which stores its EER threshold) and saved by the trainer."""
    from coadv.cli import cli_main
    from datamodules.synth_speech import write_corpus

    corpus, out = tmp_path_factory.mktemp("mn_vox"), tmp_path_factory.mktemp("mn_victim")
    write_corpus(corpus, n_speakers=8, videos=1, utts_per_video=2, seconds=(0.5, 0.8), n_trials=8, seed=3)
    cli = cli_main(
        [
            *speaker_args("ecapa_synth"),
            f"--data.init_args.root={corpus}",
            f"--trainer.default_root_dir={out}",
            *QUIET,
        ],
        run=False,
    )
    cli.trainer.validate(cli.model, datamodule=cli.datamodule)
    cli.trainer.save_checkpoint(out / "ecapa.ckpt")
    return corpus, out / "ecapa.ckpt"


def test_boundary_search_is_configurable_from_the_cli(tmp_path, ecapa_checkpoint):
    from coadv.cli import cli_main

    corpus, checkpoint = ecapa_checkpoint
    attack = {
        "class_path": "attacks.BoundarySearch",
        "init_args": {
            "steps": 6,
            "attack": {
                "class_path": "attacks.PGD",
                "init_args": {"epsilon": 0.5, "step_size": 0.05, "steps": 20, "norm": "l2"},
            },
        },
    }
    cli = cli_main(
        [
            "test",
            *configs.args("pgd_l2", "ecapa"),
            f"--model.init_args.checkpoint={checkpoint}",
            f"--data.init_args.root={corpus}",
            "--data.init_args.max_trials=2",
            f"--trainer.default_root_dir={tmp_path}",
            f"--model.init_args.attack={json.dumps(attack)}",
            *QUIET,
        ]
    )
    assert isinstance(cli.model.attack, BoundarySearch) and cli.model.attack.name == "PGD + boundary search"
    assert cli.model.attack.attack.init_args["steps"] == 20 and cli.model.attack.steps == 6
    summary = json.loads((tmp_path / "attack" / "summary.json").read_text())
    assert summary["attack"] == "BoundarySearch" and summary["domain"] == "waveform" and summary["trials"] == 2
