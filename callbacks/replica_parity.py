"""Checks that data-parallel replicas hold identical parameters at the end of training."""

from __future__ import annotations

import hashlib
import json

import lightning as L
import torch

from callbacks.common import run_dir


class ReplicaParity(L.Callback):
    """At the end of ``fit``, every rank hashes its parameters (SHA-256 of their bytes) and writes
    ``<run dir>/replica_parity/rank<r>.json``; the ranks then compare checksums and raise if replicas diverged.

    Args:
        raise_on_mismatch: raise ``RuntimeError`` when ranks differ (else only the files record it).
    """

    def __init__(self, raise_on_mismatch: bool = True) -> None:
        self.raise_on_mismatch = raise_on_mismatch

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        params = [p.detach().cpu().contiguous() for p in pl_module.parameters()]
        digest = hashlib.sha256(b"".join(p.numpy().tobytes() for p in params)).hexdigest()
        folder = run_dir(trainer) / "replica_parity"
        folder.mkdir(parents=True, exist_ok=True)
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "sha256": digest,
            "global_step": trainer.global_step,
            "n_parameters": sum(p.numel() for p in params),
        }
        (folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
        flat = torch.cat([p.flatten().double() for p in params])
        probe = torch.randn(flat.numel(), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        checksum = torch.stack([flat.sum(), flat @ probe]).to(pl_module.device)
        gathered = trainer.strategy.all_gather(checksum).view(-1, 2)
        if self.raise_on_mismatch and not torch.equal(gathered, gathered[:1].expand_as(gathered)):
            raise RuntimeError(f"replica parameters diverged across ranks: checksums {gathered.tolist()}")
