"""LightningModules: orchestration of steps, optimizers, metrics and logging."""

from lightning_modules.accr import ACCR, CrossNetworkConsistency
from lightning_modules.attack import AdversarialAttack
from lightning_modules.classifier import DigitClassifier
from lightning_modules.cr_cyclegan import CRCycleGAN
from lightning_modules.cyclegan import CycleGAN
from lightning_modules.verification import IVectorSystem, SpeakerEmbedding

__all__ = [
    "ACCR",
    "AdversarialAttack",
    "CRCycleGAN",
    "CrossNetworkConsistency",
    "CycleGAN",
    "DigitClassifier",
    "IVectorSystem",
    "SpeakerEmbedding",
]
