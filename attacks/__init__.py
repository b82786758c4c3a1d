"""Adversarial perturbations of utterances against speaker verification (plain torch, one attack per file)."""

from attacks.base import Attack, AttackResult, VerificationObjective
from attacks.carlini_wagner import CarliniWagnerL2
from attacks.fgsm import FGSM
from attacks.gauss_newton import GaussNewton
from attacks.mfcc_ivec import MFCCIvec
from attacks.pgd import PGD
from attacks.quasi_newton import QuasiNewton
from attacks.step_size_regularized import StepSizeRegularized

__all__ = [
    "FGSM",
    "PGD",
    "Attack",
    "AttackResult",
    "CarliniWagnerL2",
    "GaussNewton",
    "MFCCIvec",
    "QuasiNewton",
    "StepSizeRegularized",
    "VerificationObjective",
]
