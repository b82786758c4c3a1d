"""Speaker-verification victims behind one contract (``nets.speaker.contract``): ``embed(wave [B, T]) -> [B, D]``,
``compare(enrol_embedding, test_embedding) -> [B]``, ``score(enrol, test) -> [B]``."""

from nets.speaker.contract import FeatureDomainVictim, SpeakerVictim
from nets.speaker.encoders import ECAPATDNN, SEResNet34, SpeakerEncoder
from nets.speaker.frontend import MFCC, Fbank
from nets.speaker.ge2e import GE2EResemblyzer
from nets.speaker.ivector import IVector
from nets.speaker.pooling import AAMSoftmax, AttentiveStatsPool
from nets.speaker.pretrained import SpeechBrainECAPA
from nets.speaker.wespeaker import WeSpeakerResNet34

__all__ = [
    "AAMSoftmax",
    "AttentiveStatsPool",
    "ECAPATDNN",
    "FeatureDomainVictim",
    "Fbank",
    "GE2EResemblyzer",
    "IVector",
    "MFCC",
    "SEResNet34",
    "SpeakerEncoder",
    "SpeakerVictim",
    "SpeechBrainECAPA",
    "WeSpeakerResNet34",
]
