"""Adversarial perturbations of utterances against speaker verification (plain torch, one attack per file)."""

from attacks.base import Attack, AttackResult, VerificationObjective
from attacks.boundary_search import BoundarySearch
from attacks.carlini_wagner import CarliniWagnerL2
from attacks.ddn import DDN
from attacks.feature_domain import FeatureDomain
from attacks.fgsm import FGSM
from attacks.fmn import FMN
from attacks.gauss_newton import GaussNewton
from attacks.mfcc_ivec import MFCCIvec
from attacks.pgd import PGD
from attacks.quasi_newton import QuasiNewton
from attacks.step_size_regularized import StepSizeRegularized

__all__ = [
    "DDN",
    "FGSM",
    "FMN",
    "FeatureDomain",
    "PGD",
    "Attack",
    "AttackResult",
    "BoundarySearch",
    "CarliniWagnerL2",
    "GaussNewton",
    "MFCCIvec",
    "QuasiNewton",
    "StepSizeRegularized",
    "VerificationObjective",
]
