"""Data-parallel training for multi-optimizer manual optimization (GANs) without DDP's reducer.

DDP's reducer expects every trainable parameter to receive a gradient in each backward. A GAN step runs two
backwards per batch, each touching one player's parameters only (the other is frozen by ``toggle_optimizer``),
so plain ``ddp`` aborts with "parameters that were not used in producing the loss". The generic fix,
``ddp_find_unused_parameters_true``, traverses the autograd graph on every backward and still all-reduces the
whole model's buckets (the frozen player's slots as zeros). ``GradSyncDDPStrategy`` instead averages, inside
each ``optimizer.step()`` and before the update, exactly the gradients that optimizer is about to use, in one
coalesced all-reduce.
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
    """DDP processes, with gradients averaged per optimizer step instead of by DDP's reducer.

    Each ``optimizer.step()`` runs Lightning's closure (for automatic optimization: forward and backward) and then,
    still inside the step and before any ``on_before_optimizer_step`` hook or gradient clipping, averages over the
    ranks the gradients of that optimizer's parameters in one coalesced all-reduce, so automatic and manual
    optimization both step on averaged gradients. Every rank reduces the same set: a parameter without a gradient on
    one rank contributes zeros there; one without a gradient on every rank keeps ``grad=None`` (the optimizer skips
    it, as on one process).

    Parameters and buffers are broadcast from rank 0 once at setup; buffers (e.g. batch-norm statistics) are not
    re-synchronised afterwards, so each rank keeps its own running statistics (instance norm, the default here,
    has none). Registered as ``strategy: ddp_grad_sync``. Takes the arguments of ``DDPStrategy``.
    """

    strategy_name = "ddp_grad_sync"

    def configure_ddp(self) -> None:
        _sync_module_states(self.model)  # identical start on every rank; the module stays unwrapped

    @torch.no_grad()
    def _average_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        if not dist.is_available() or not dist.is_initialized() or self.world_size == 1:
            return
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for group in optimizer.param_groups:
            for p in group["params"]:
                by_dtype.setdefault(p.dtype, []).append(p)
        for params in by_dtype.values():  # same order and sizes on every rank: the optimizer's parameter list
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            has_grad = torch.tensor(
                [p.grad is not None for p in params], dtype=params[0].dtype, device=params[0].device
            )
            flat = _flatten_dense_tensors([*grads, has_grad])
            dist.all_reduce(flat)
            *synced, count = _unflatten_dense_tensors(flat, [*grads, has_grad])
            for p, grad, n in zip(params, synced, count.tolist()):
                if n == 0:
                    continue  # no rank computed it: leave None, as one process would
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                p.grad.copy_(grad.div_(self.world_size))

    def optimizer_step(self, optimizer: Any, closure: Callable[[], Any], model: Any = None, **kwargs: Any) -> Any:
        inner = getattr(optimizer, "optimizer", optimizer)

        def closure_then_average() -> Any:
            result = closure()  # automatic optimization: forward + backward here; manual: already done
            self._average_gradients(inner)
            return result

        return super().optimizer_step(optimizer, closure_then_average, model, **kwargs)


if "ddp_grad_sync" not in StrategyRegistry:
    StrategyRegistry.register(
        "ddp_grad_sync", GradSyncDDPStrategy, description="DDP with per-optimizer gradient averaging (GANs)"
    )
