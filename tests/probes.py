"""Helpers that subprocess tests run (importable with ``PYTHONPATH=tests``).

``BatchRecorder`` and ``KillAt`` are callbacks for ``coadv fit`` runs; ``python tests/probes.py partial_grads
<manual|automatic> <out>`` trains two processes one step on hand-made gradients (rank 1 gives one parameter no
gradient) and writes each rank's parameters.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader


def image_key(image: torch.Tensor) -> str:
    """A content hash of one image: maps a training sample back to its dataset index without the sampler."""
    return hashlib.sha1(image.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


class BatchRecorder(L.Callback):
    """Writes ``<root>/batches/rank<r>.json``: per epoch, the image keys of every batch of domains A and B."""

    def __init__(self) -> None:
        self.seen: dict[int, dict[str, list[list[str]]]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        epoch = self.seen.setdefault(trainer.current_epoch, {"a": [], "b": []})
        for key in ("a", "b"):
            epoch[key].append([image_key(x) for x in batch[key][0]])

    def on_train_end(self, trainer, pl_module) -> None:
        out = Path(trainer.default_root_dir) / "batches"
        out.mkdir(parents=True, exist_ok=True)
        (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))


class KillAt(L.Callback):
    """SIGKILLs its own process when training batch ``batch`` (counted over epochs) is about to start: an abrupt
    death mid-epoch, nothing flushed or saved on the way out."""

    def __init__(self, batch: int) -> None:
        self.batch = batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.fit_loop.total_batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


class _Probe(L.LightningModule):
    """``loss_r = w . x_r + [r == 0] 3 sum(extra)`` with ``x_r = (r + 1) [1, 2, 3]``; ``unused`` never gets a
    gradient. SGD(lr 0.1, weight decay 0.5): a zero-filled ``unused`` would decay, a ``None`` one is skipped."""

    def __init__(self, manual: bool) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([1.0, -1.0, 0.5]))
        self.extra = torch.nn.Parameter(torch.tensor([2.0, 4.0]))
        self.unused = torch.nn.Parameter(torch.tensor([1.0]))
        self.automatic_optimization = not manual

    def loss(self) -> torch.Tensor:
        x = (self.global_rank + 1) * torch.tensor([1.0, 2.0, 3.0])
        loss = (self.w * x).sum()
        return loss + 3 * self.extra.sum() if self.global_rank == 0 else loss

    def training_step(self, batch, batch_idx):
        if self.automatic_optimization:
            return self.loss()
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(self.loss())
        opt.step()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, weight_decay=0.5)

    def train_dataloader(self):
        return DataLoader(torch.zeros(2, 1), batch_size=1)

    def on_train_end(self) -> None:
        torch.save({k: v.detach() for k, v in self.named_parameters()}, Path(self.out) / f"rank{self.global_rank}.pt")


def partial_grads(mode: str, out: str) -> None:
    model = _Probe(manual=mode == "manual")
    model.out = out
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_find_unused_parameters_true",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model)


if __name__ == "__main__":
    partial_grads(sys.argv[2], sys.argv[3])
