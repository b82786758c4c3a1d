"""Speaker-verification victims: ``embed(wave [B, T]) -> [B, D]`` and ``score(enrol, test) -> [B]``."""

from nets.speaker.encoders import ECAPATDNN, SEResNet34, SpeakerEncoder
from nets.speaker.frontend import MFCC, Fbank
from nets.speaker.ivector import IVector
from nets.speaker.pooling import AAMSoftmax, AttentiveStatsPool
from nets.speaker.pretrained import SpeechBrainECAPA
from nets.speaker.wespeaker import WeSpeakerResNet34

__all__ = [
    "AAMSoftmax",
    "AttentiveStatsPool",
    "ECAPATDNN",
    "Fbank",
    "IVector",
    "MFCC",
    "SEResNet34",
    "SpeakerEncoder",
    "SpeechBrainECAPA",
    "WeSpeakerResNet34",
]
