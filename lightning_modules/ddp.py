"""Data-parallel training for multi-optimizer manual optimization (GANs) without DDP's reducer.

DDP's reducer expects every trainable parameter to receive a gradient in each backward. A GAN step runs two
backwards per batch, each touching one player's parameters only (the other is frozen by ``toggle_optimizer``),
so plain ``ddp`` aborts with "parameters that were not used in producing the loss". The generic fix,
``ddp_find_unused_parameters_true``, traverses the autograd graph on every backward and still all-reduces the
whole model's buckets (the frozen player's slots as zeros). ``GradSyncDDPStrategy`` instead averages, just before
each ``optimizer.step()``, exactly the gradients that optimizer is about to use, in one coalesced all-reduce.
``benchmarks/ddp_strategies.py`` measures both side by side.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch.overrides.distributed import _sync_module_states
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


class GradSyncDDPStrategy(DDPStrategy):
    """DDP processes and samplers, with gradients averaged per optimizer step instead of by DDP's reducer.

    Parameters and buffers are broadcast from rank 0 once at setup; buffers (e.g. batch-norm statistics) are not
    re-synchronised afterwards, so each rank keeps its own running statistics (instance norm, the default here,
    has none). Registered as ``strategy: ddp_grad_sync``. Takes the arguments of ``DDPStrategy``.
    """

    strategy_name = "ddp_grad_sync"

    def configure_ddp(self) -> None:
        _sync_module_states(self.model)  # identical start on every rank; the module stays unwrapped

    @torch.no_grad()
    def _average_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads or not dist.is_available() or not dist.is_initialized() or self.world_size == 1:
            return
        flat = _flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat /= self.world_size
        for grad, synced in zip(grads, _unflatten_dense_tensors(flat, grads)):
            grad.copy_(synced)

    def optimizer_step(self, optimizer: Any, closure: Callable[[], Any], model: Any = None, **kwargs: Any) -> Any:
        self._average_gradients(getattr(optimizer, "optimizer", optimizer))
        return super().optimizer_step(optimizer, closure, model, **kwargs)


if "ddp_grad_sync" not in StrategyRegistry:
    StrategyRegistry.register(
        "ddp_grad_sync", GradSyncDDPStrategy, description="DDP with per-optimizer gradient averaging (GANs)"
    )
