"""Translation nets and image pools in files: start weights for fine-tunes (``init_from``), pools in checkpoints."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

NETS = ("g_ab", "g_ba", "d_a", "d_b")  # the four trained nets of a translation module (state-dict prefixes)


def nets_only(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The entries of ``state`` that belong to the four nets."""
    return {k: v for k, v in state.items() if k.split(".", 1)[0] in NETS}


def export_nets(checkpoint: str, out: str, **provenance: Any) -> dict[str, Any]:
    """Write the four nets' weights of a translation checkpoint to ``out`` (no optimizer states, pools or
    hyperparameters: a small start file for ``init_from``), with ``provenance`` (e.g. the command that trained
    it) beside them. Returns what was written."""
    full = torch.load(checkpoint, map_location="cpu", weights_only=False)  # a checkpoint this project wrote
    state = nets_only(full["state_dict"])
    if {k.split(".", 1)[0] for k in state} != set(NETS):
        raise ValueError(f"{checkpoint} holds no translation nets ({', '.join(NETS)})")
    record = {
        "state_dict": state,
        "epoch": full.get("epoch"),
        "global_step": full.get("global_step"),
        "source": str(checkpoint),
        **provenance,
    }
    torch.save(record, out)
    return record


def load_nets(module, path: str) -> None:
    """The four nets' weights from ``path`` (see ``init_from``); a clear error naming the file otherwise."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    except FileNotFoundError:
        raise FileNotFoundError(f"model.init_from={path!r}: no such file") from None
    except Exception as err:  # not a weights file (or an unreadable one)
        raise ValueError(
            f"model.init_from={path!r} is not a weights file with a 'state_dict' that torch.load reads with "
            f"weights_only=True ({err}); write one with lightning_modules.translation_io.export_nets"
        ) from None
    state, own = nets_only(state), nets_only(module.state_dict())
    differ = own.keys() ^ state.keys() | {k for k in own.keys() & state.keys() if own[k].shape != state[k].shape}
    bad = sorted({k.split(".", 1)[0] for k in differ})
    if bad:
        raise ValueError(f"model.init_from={path!r}: {', '.join(bad)} differ in architecture from this run's nets")
    with torch.no_grad():
        for key, value in state.items():
            own[key].copy_(value)


def pools_per_rank(module) -> list[Any]:
    """Every rank's image pools (gathered under DDP: every rank builds the checkpoint, rank 0 writes it)."""
    pools = {"a": module.pool_a.state_dict(), "b": module.pool_b.state_dict()}
    world_size = module.trainer.world_size if module._trainer is not None else 1
    if world_size > 1 and dist.is_available() and dist.is_initialized():
        per_rank: list[Any] = [None] * world_size
        dist.all_gather_object(per_rank, pools)
        return per_rank
    return [pools]


def load_pools(module, checkpoint: dict[str, Any]) -> None:
    """Each rank continues with its own pools; a checkpoint of another process count (or an older one holding
    one ``image_pools``) gives rank ``r`` the pools of saved rank ``r mod n``, with a warning."""
    per_rank = checkpoint.get("image_pools_per_rank")
    if per_rank is None:
        per_rank = [checkpoint["image_pools"]] if checkpoint.get("image_pools") is not None else []
    if not per_rank:
        return
    world_size = module.trainer.world_size if module._trainer is not None else 1
    if len(per_rank) != world_size:
        rank_zero_warn(
            f"the checkpoint holds the image pools of {len(per_rank)} process(es), this run has "
            f"{world_size}: rank r continues with saved rank r mod {len(per_rank)}'s pools"
        )
    pools = per_rank[module.global_rank % len(per_rank)]
    module.pool_a.load_state_dict(pools["a"], module.device)
    module.pool_b.load_state_dict(pools["b"], module.device)
