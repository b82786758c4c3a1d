"""The victim contract that attacks, LightningModules and callbacks rely on, and how a net or an attack names
itself in a checkpoint.

``SpeakerVictim``: ``embed(wave [B, T] in [-1, 1], 16 kHz) -> [B, D]`` with the front-end inside the graph (so
gradients reach the waveform), ``compare(enrol_embedding, test_embedding) -> [B]`` (attacks cache the enrolment
side) and ``score(enrol, test) = compare(embed(enrol), embed(test))``. Accept a trial when ``score >= threshold``.
``FeatureDomainVictim`` adds the hooks of feature-domain attacks (MFCC-ivec): ``frames`` and ``embed_frames``.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class SpeakerVictim(Protocol):
    """What an attack needs of a speaker-verification model (all differentiable in the test waveform)."""

    embedding_dim: int

    def embed(self, wave: Tensor) -> Tensor:
        """Embeddings ``[B, D]`` of waveforms ``[B, T]``."""
        ...

    def compare(self, enrol_embedding: Tensor, test_embedding: Tensor) -> Tensor:
        """Scores ``[B]`` of embedding pairs ``[B, D]``."""
        ...

    def score(self, enrol: Tensor, test: Tensor) -> Tensor:
        """Scores ``[B]`` of waveform pairs."""
        ...


@runtime_checkable
class FeatureDomainVictim(SpeakerVictim, Protocol):
    """A victim whose front-end output can be perturbed directly (MFCC-ivec)."""

    def frames(self, wave: Tensor) -> Tensor:
        """Feature frames ``[B, N, D]`` of waveforms ``[B, T]``."""
        ...

    def embed_frames(self, frames: Tensor) -> Tensor:
        """Embeddings ``[B, E]`` of feature frames ``[B, N, D]``."""
        ...


class RecordsInitArgs:
    """Keeps the constructor arguments, defaults included, in ``init_args``, so that ``config(obj)`` can name the
    object as LightningCLI does (``class_path`` + ``init_args``) and a checkpoint can rebuild it."""

    init_args: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any):
        obj = super().__new__(cls)
        bound = inspect.signature(cls.__init__).bind(obj, *args, **kwargs)
        bound.apply_defaults()
        # __dict__ directly: nn.Module.__setattr__ needs state that its __init__ has not created yet
        obj.__dict__["init_args"] = {k: v for k, v in list(bound.arguments.items())[1:]}
        return obj


def config(value: Any) -> Any:
    """``value`` as plain data: objects with recorded ``init_args`` become ``{"class_path", "init_args"}``,
    containers are converted element-wise; raises ``TypeError`` for anything else that is not a plain value."""
    if isinstance(value, RecordsInitArgs):
        cls = type(value)
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": config(value.init_args)}
    if isinstance(value, dict):
        return {k: config(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(config(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{type(value).__name__} records no init_args: it cannot be named in a checkpoint")
