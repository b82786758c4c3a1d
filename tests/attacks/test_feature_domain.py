"""Searches in a victim's feature domain (#20): on a victim whose score is linear in its features, every
feature-domain search reaches the exact minimal feature perturbation of the voiced frames; the feature-domain rho
of a waveform perturbation is the hand-computed feature difference."""

import pytest
import torch
from helpers import LinearVictim, linear_case

from attacks import (
    DDN,
    FMN,
    PGD,
    BoundarySearch,
    FeatureDomain,
    GaussNewton,
    QuasiNewton,
    StepSizeRegularized,
    VerificationObjective,
)
from attacks.feature_domain import voiced_frames


class LinearFrameVictim(LinearVictim):
    """Frames: the waveform cut in 8-sample rows, plus a constant 0.5 (so features differ from the waveform);
    the score is linear in the frames: s = w^T (frames - 0.5).flatten()."""

    def frames(self, wave):
        return wave.reshape(len(wave), -1, 8) + 0.5

    def embed_frames(self, frames):
        return (frames - 0.5).flatten(1)

    def embed(self, wave):
        return self.embed_frames(self.frames(wave))


def case(seed=0):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(64, generator=gen, dtype=torch.float64)
    x = torch.randn(4, 64, generator=gen, dtype=torch.float64) * 0.1
    labels = torch.tensor([1, 0, 1, 0])
    x = x + ((labels * 2 - 1) * 0.05 - x @ w)[:, None] * w / w.dot(w)  # decided right, by a margin
    victim = LinearFrameVictim(w)
    objective = VerificationObjective(victim, torch.zeros(4, 64, dtype=torch.float64), labels, 0.0)
    voiced = voiced_frames(victim.frames(x), 0.3)
    w_voiced = (w.view(1, -1, 8) * voiced.unsqueeze(-1)).flatten(1)  # only voiced features may move
    minimal = (x @ w).abs() / w_voiced.norm(dim=1)
    return x, objective, minimal, voiced


SEARCHES = {
    "gauss_newton": lambda: GaussNewton(steps=5, overshoot=1e-4),
    "qn_lbfgs": lambda: QuasiNewton(eta=1e-3, c=10.0),
    "ssr": lambda: StepSizeRegularized(rho0=None, eta=1e-5),
    "ddn": lambda: DDN(steps=200),
    "fmn": lambda: FMN(steps=200, overshoot=1e-3),
}


@pytest.mark.parametrize("name", SEARCHES)
def test_feature_domain_searches_reach_the_exact_minimal_feature_perturbation(name):
    x, objective, minimal, voiced = case()
    result = FeatureDomain(SEARCHES[name]()).perturb(x, objective)
    frames = objective.victim.frames(x)
    delta = result.extra["features"] - frames
    assert torch.equal(result.adversarial, x)  # the waveform is not touched
    assert torch.equal(delta[~voiced], torch.zeros_like(delta[~voiced]))  # unvoiced frames stay clean
    assert result.success.all()
    norms = delta.flatten(1).norm(dim=1)
    assert (norms >= minimal * (1 - 1e-6)).all() and (norms <= minimal * 1.01).all(), norms / minimal
    scores = (result.extra["features"] - 0.5).flatten(1) @ objective.victim.w
    assert torch.equal(scores >= 0, objective.labels == 0)  # the decision truly flipped
    assert (result.grad_evals >= 1).all() and torch.equal(objective.grad_evals, result.grad_evals)


def test_iterated_mfcc_ivec_with_a_boundary_search_is_minimal_on_a_linear_victim():
    """BIM in the feature domain (MFCC-ivec iterated), then a boundary search toward the clean features."""
    x, objective, minimal, voiced = case()
    bim = BoundarySearch(PGD(epsilon=1.0, step_size=0.05, steps=40, norm="linf"), steps=30)
    result = FeatureDomain(bim).perturb(x, objective)
    delta = (result.extra["features"] - objective.victim.frames(x)).flatten(1)
    assert result.success.all()
    linf_minimal = (x @ objective.victim.w).abs() / (objective.victim.w.view(1, -1, 8) * voiced.unsqueeze(-1)).flatten(
        1
    ).abs().sum(1)
    assert torch.allclose(delta.abs().max(1).values, linf_minimal, rtol=1e-3)  # BIM is L-inf: its exact minimum


def test_feature_domain_refuses_feature_attacks_and_neural_victims():
    from attacks import MFCCIvec

    with pytest.raises(ValueError, match="attack=.*expected a waveform Attack"):
        FeatureDomain(MFCCIvec())
    x, objective, _ = linear_case()
    with pytest.raises(TypeError, match="GaussNewton in the feature domain attacks i-vector victims"):
        FeatureDomain(GaussNewton()).perturb(x, objective)


def test_feature_rho_of_a_waveform_perturbation_is_the_hand_computed_feature_difference():
    from lightning_modules.attack_metrics import feature_rho

    x, objective, _, _ = case()
    victim = objective.victim
    delta = torch.zeros_like(x[0])
    delta[3], delta[17] = 0.01, -0.02
    clean, adversarial = victim.frames(x[:1])[0], victim.frames((x[0] + delta)[None])[0]
    by_hand = (0.01**2 + 0.02**2) ** 0.5 / ((x[0] + 0.5) ** 2).sum().sqrt()  # frames = wave rows + 0.5
    assert feature_rho(clean, adversarial) == pytest.approx(float(by_hand), rel=1e-9)


class LoudFrameVictim(LinearFrameVictim):
    """Frames in MFCC-like units: tens, far outside a waveform's [-1, 1] clip."""

    def frames(self, wave):
        return wave.reshape(len(wave), -1, 8) * 100 + 0.5

    def embed_frames(self, frames):
        return (frames - 0.5).flatten(1) / 100


@pytest.mark.parametrize("name", ["gauss_newton", "ssr", "ddn"])
def test_features_far_outside_the_waveform_clip_are_not_clipped_and_the_margin_holds(name):
    from attacks.base import KAPPA

    x, objective, _, _ = case()
    victim = LoudFrameVictim(objective.victim.w)
    objective = VerificationObjective(victim, objective.enrol, objective.labels, 0.0, kappa=KAPPA)
    frames = victim.frames(x)
    assert frames.abs().max() > 5  # the waveform clip (-1, 1) would destroy these features
    result = FeatureDomain(SEARCHES[name]()).perturb(x, objective)
    assert result.success.all()
    delta = result.extra["features"] - frames
    assert delta.flatten(1).norm(dim=1).max() < 0.1 * frames.flatten(1).norm(dim=1).min()  # a small change, no clip


def test_claim_a_takes_bim_with_a_boundary_search_as_iterated_mfcc_ivec_only_on_features():
    from types import SimpleNamespace

    from coadv.compare.claims import CLAIMS, applies

    claim_a = next(c for c in CLAIMS if c.key == "a")
    waveform, feature = SimpleNamespace(summary={"domain": "waveform"}), SimpleNamespace(summary={"domain": "mfcc"})
    assert applies(claim_a, feature, "bim+bs") and not applies(claim_a, waveform, "bim+bs")
    assert applies(claim_a, waveform, "gauss_newton+min") and applies(claim_a, waveform, "mfcc_ivec")
