"""Every exported attack on CUDA against a neural victim (ECAPA-TDNN) and, for MFCC-ivec, an i-vector victim:
state on the victim's device, outputs in the clip range, success and gradient counts truthful."""

import pytest
import torch

import attacks
from attacks import (
    FGSM,
    PGD,
    Attack,
    CarliniWagnerL2,
    GaussNewton,
    MFCCIvec,
    QuasiNewton,
    StepSizeRegularized,
    VerificationObjective,
)

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

FACTORIES = {
    "FGSM": lambda: FGSM(epsilon=0.01),
    "PGD": lambda: PGD(epsilon=0.01, step_size=0.002, steps=5, random_start=True),
    "CarliniWagnerL2": lambda: CarliniWagnerL2(search_steps=2, steps=5, max_grad_evals=8),
    "GaussNewton": lambda: GaussNewton(steps=5, max_grad_evals=4),
    "QuasiNewton": lambda: QuasiNewton(outer_steps=2, iterations=3, warm_start=GaussNewton(steps=3), max_grad_evals=12),
    "QuasiNewton_bfgs": lambda: QuasiNewton(outer_steps=2, iterations=3, method="bfgs"),
    "StepSizeRegularized": lambda: StepSizeRegularized(rho0=None, steps=6, max_grad_evals=5),
    "MFCCIvec": lambda: MFCCIvec(epsilon=0.5),
    "DDN": lambda: attacks.DDN(steps=5),
    "FMN": lambda: attacks.FMN(steps=5),
    "BoundarySearch": lambda: attacks.BoundarySearch(PGD(epsilon=0.05, step_size=0.01, steps=3, norm="l2"), steps=4),
}
EXPORTED = [
    name
    for name in attacks.__all__
    if isinstance(getattr(attacks, name), type) and issubclass(getattr(attacks, name), Attack) and name != "Attack"
]


def victim_and_trials(name: str, device: str):
    from nets.speaker import ECAPATDNN, IVector

    torch.manual_seed(0)
    victim = (
        IVector(n_components=4, rank=3, n_mfcc=5)
        if name == "MFCCIvec"
        else ECAPATDNN(channels=16, embedding_dim=8, scale=2)
    )
    victim = victim.to(device).eval().requires_grad_(False)
    enrol, test = (torch.rand(3, 8000, device=device) - 0.5) * 0.5, (torch.rand(3, 8000, device=device) - 0.5) * 0.5
    with torch.no_grad():
        scores = victim.score(enrol, test)
    labels = torch.tensor([1, 0, 1], device=device)
    threshold = float(scores.mean())
    return VerificationObjective(victim, enrol, labels, threshold), test


def check_attack(name: str, device: str) -> None:
    """The checks, for any device (run on CPU by hand to check the test itself)."""
    objective, test = victim_and_trials(name, device)
    result = FACTORIES[name]().perturb(test, objective)
    tensors = [result.adversarial, result.success, result.iterations, result.grad_evals]
    tensors += [v for v in result.extra.values() if isinstance(v, torch.Tensor)]
    assert all(t.device.type == torch.device(device).type for t in tensors)
    assert result.adversarial.dtype == test.dtype and result.adversarial.abs().max() <= 1
    assert torch.equal(result.grad_evals, objective.grad_evals) and (result.grad_evals >= 1).all()
    if name != "MFCCIvec":  # feature-domain success is judged on the features
        with torch.no_grad():
            assert torch.equal(result.success, objective.is_success(objective.residual(result.adversarial)))


@pytest.mark.parametrize("name", [*EXPORTED, "QuasiNewton_bfgs"])
def test_every_attack_runs_on_cuda(name):
    assert name in FACTORIES, f"{name} is exported but not covered here: add it to FACTORIES"
    check_attack(name, "cuda")


def test_half_precision_victim_on_cuda_is_refused():
    objective, test = victim_and_trials("GaussNewton", "cuda")
    with pytest.raises(ValueError, match="torch.float16: attacks need float32 or float64"):
        VerificationObjective(objective.victim.half(), objective.enrol.half(), objective.labels, 0.0)
