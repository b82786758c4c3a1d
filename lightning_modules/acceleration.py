"""Speed switches every training module offers: ``compile`` (``torch.compile`` of its nets) and, for image nets,
``channels_last``. bf16 mixed precision is the Trainer's (``--trainer.precision=bf16-mixed``) and needs nothing here.

Both switches keep the math (same parameters, same state dict keys, checkpoints interchangeable with runs without
them); float results may differ in the last bits (other kernels, fused operations).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable

import torch
from torch import Tensor, nn


def to_channels_last(x: Tensor) -> Tensor:
    """``x`` in channels-last memory format when it is a 4-D image batch; other tensors unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


def check_compiler(key: str = "model.init_args.compile") -> None:
    """``torch.compile`` generates C++ on CPU: refuse early, naming ``key``, when no C compiler is installed."""
    if not torch.cuda.is_available() and not any(shutil.which(cc) for cc in ("cc", "gcc", "clang")):
        raise RuntimeError(
            f"{key}=true needs a C compiler on CPU (torch.compile generates C++): install gcc or clang, "
            f"or set {key}=false"
        )


def accelerate(nets: Iterable[nn.Module], channels_last: bool = False, compile: bool = False) -> None:
    """Convert ``nets`` in place: 4-D weights to channels-last (convolutions then run in NHWC, the layout tensor
    cores want), and ``nn.Module.compile()`` (compiled on first call; parameter names and state dict unchanged)."""
    if compile:
        check_compiler()
    for net in nets:
        if channels_last:
            net.to(memory_format=torch.channels_last)
        if compile:
            net.compile()


def is_compiled(net: nn.Module) -> bool:
    """Whether ``net`` was compiled in place by ``accelerate``."""
    return getattr(net, "_compiled_call_impl", None) is not None
