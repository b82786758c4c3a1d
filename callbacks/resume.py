"""Exact resume: ``last.ckpt`` mid-epoch and at each epoch end, with every rank's RNG states, written atomically.

With the training loaders of ``datamodules.sampling`` (their position is in Lightning's loop state), the image pools
(``CycleGAN.on_save_checkpoint``), optimizers and LR schedulers (Lightning), a run killed at any moment and resumed
with ``--ckpt_path last`` continues with the same batches, random draws and updates as the uninterrupted run.
"""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_warn


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves each checkpoint to ``.<name>.partial`` in the target's folder, flushes it to disk, then renames it over
    the target (``os.replace``): a kill at any moment leaves the previous complete file or the new one, never a
    truncated one. Lightning's own save writes a temporary file in the system temp folder and moves it, which is a
    copy (not atomic) when that folder is on another file system. Remote (``scheme://``) paths go to Lightning."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        with open(partial, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)


def rng_state() -> dict[str, Any]:
    """This process's torch (CPU and CUDA), NumPy and Python RNG states, as tensors and plain types (loadable with
    ``torch.load(weights_only=True)``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "python": (version, torch.tensor(internal, dtype=torch.int64), gauss_next),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``rng_state``."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal.tolist()), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumeCheckpoint(ModelCheckpoint):
    """Keeps ``<dirpath>/last.ckpt`` for exact resume (``coadv fit ... --ckpt_path last``).

    Saves every ``every_n_train_steps`` optimizer steps (a GAN batch takes two) and at the end of every epoch, after
    the module's epoch-end hooks (LR schedulers) ran; a step save that would fall on an epoch's last batch is left
    to that epoch-end save, since Lightning resumes from a last-batch checkpoint without running the epoch-end hooks.
    Keeps no other checkpoint (``save_top_k=0``): pair it with a monitored ``ModelCheckpoint`` for the best one.

    Every checkpoint written while it is in the trainer (its own and other callbacks') carries ``rng_states``, the
    RNG states of all ranks, restored at ``on_train_start`` of the resumed run. It also writes through
    ``AtomicCheckpointIO`` when the strategy uses Lightning's default ``TorchCheckpointIO`` (another configured
    ``CheckpointIO`` is left alone).

    Args:
        dirpath: folder of ``last.ckpt`` (``None``: Lightning's default, ``checkpoints/`` next to the logger's files).
        every_n_train_steps: optimizer steps between saves (>= 1).
    """

    def __init__(self, dirpath: str | None = None, every_n_train_steps: int = 100) -> None:
        if every_n_train_steps < 1:
            raise ValueError(f"every_n_train_steps={every_n_train_steps} must be >= 1")
        super().__init__(
            dirpath=dirpath,
            save_top_k=0,
            save_last=True,
            every_n_train_steps=every_n_train_steps,
            save_on_train_epoch_end=True,
        )
        self._restore: list[dict[str, Any]] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # on_train_epoch_end saves once the epoch's hooks ran
        with warnings.catch_warnings():  # "manual optimization ... state AFTER optimization" is what resume needs
            warnings.filterwarnings("ignore", message=".*manual optimization and every_n_train_steps.*")
            super().on_train_batch_end(trainer, pl_module, *args, **kwargs)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        state = rng_state()
        if dist.is_available() and dist.is_initialized() and trainer.world_size > 1:
            states: list[Any] = [None] * trainer.world_size
            dist.all_gather_object(states, state)  # every rank builds the checkpoint; rank 0 writes it
        else:
            states = [state]
        checkpoint["rng_states"] = states

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._restore = checkpoint.get("rng_states")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # here, not at load: the sanity check and dataloader setup between the two must not shift the streams
        super().on_train_start(trainer, pl_module)
        states, self._restore = self._restore, None
        if states is None:
            return
        if len(states) != trainer.world_size:
            rank_zero_warn(
                f"the checkpoint holds the RNG states of {len(states)} processes, this run has "
                f"{trainer.world_size}: random draws continue from fresh states"
            )
            return
        set_rng_state(states[trainer.global_rank])


__all__ = ["AtomicCheckpointIO", "ResumeCheckpoint", "rng_state", "set_rng_state"]
