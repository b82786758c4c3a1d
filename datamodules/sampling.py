"""Training samplers that give the same experiment on 1 or N processes and resume mid-epoch at the next batch.

Under DDP, Lightning injects ``DistributedSampler(shuffle=True, seed=<global seed>)`` into every training
DataLoader whose sampler is not already a ``DistributedSampler`` (``use_distributed_sampler=True``, the default):
two domains of the same size would then get the same permutation, and a set epoch length would be lost.
``ShardedRandomSampler`` *is* a ``DistributedSampler``, so Lightning leaves it in place whatever that flag says, and
it shards one seeded global draw per epoch itself. ``ResumableLoader`` gives Lightning the ``state_dict`` /
``load_state_dict`` pair it checkpoints mid-epoch (``CombinedLoader`` saves the state of every loader that has them).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler


def derive_seed(*keys: int) -> int:
    """A 63-bit seed mixed from non-negative integer keys (NumPy's ``SeedSequence``): nearby keys give unrelated
    streams, e.g. ``(seed, domain, epoch)``."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def process_grid(trainer) -> tuple[int, int]:
    """``(world_size, global_rank)`` of the trainer a DataModule is attached to; ``(1, 0)`` without one."""
    if trainer is None:
        return 1, 0
    return trainer.world_size, trainer.global_rank


def global_batches(requested: int | None, dataset_size: int, batch_size: int, world_size: int) -> int:
    """Batches per epoch summed over all processes.

    ``requested`` (``data.batches_per_epoch``) must split evenly over the processes, so that an epoch holds the same
    images on 1 or N of them; ``None``: the dataset's whole batches, rounded down to a multiple of ``world_size``.
    """
    if requested is None:
        n = dataset_size // batch_size // world_size * world_size
        if n == 0:
            raise ValueError(
                f"{dataset_size} training samples make no batch of data.batch_size={batch_size} for each of "
                f"{world_size} processes; lower data.batch_size"
            )
        return n
    if requested % world_size:
        raise ValueError(
            f"data.batches_per_epoch={requested} counts batches over all processes and must be divisible by the "
            f"{world_size} processes (each runs batches_per_epoch / {world_size}); use a multiple of {world_size}"
        )
    return requested


class ShardedRandomSampler(DistributedSampler):
    """One seeded draw of ``num_batches * batch_size`` indices per epoch, dealt to the processes in whole batches.

    Epoch ``e`` draws concatenated random permutations of the dataset (without replacement within each pass, as
    ``RandomSampler(num_samples=...)``) from the seed ``derive_seed(seed, stream, e)``, cut into ``num_batches``
    batches; global batch ``j`` goes to rank ``j % num_replicas``. The ranks' shares are disjoint and together are
    exactly the single-process epoch: step ``s`` on N processes sees the single-process batches ``sN .. sN + N - 1``.
    Different ``stream`` values (e.g. domains A and B) give independent orders.

    With ``with_seeds``, each item is ``(index, seed)``: a per-draw seed for the dataset's own randomness (random
    crops), so that it depends neither on the global RNG nor on DataLoader workers.

    Args:
        dataset: the map-style dataset (only its length is used).
        num_batches: batches per epoch over all processes (divisible by ``num_replicas``).
        batch_size: batch size of each process.
        seed: data seed (>= 0).
        stream: stream key, e.g. 0 for domain A and 1 for domain B (>= 0).
        num_replicas: number of processes.
        rank: this process.
        with_seeds: yield ``(index, seed)`` pairs instead of indices.
    """

    def __init__(
        self,
        dataset: Dataset,
        num_batches: int,
        batch_size: int,
        seed: int = 0,
        stream: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        with_seeds: bool = False,
    ) -> None:
        if num_batches < 1 or num_batches % num_replicas:
            raise ValueError(f"num_batches={num_batches} must be a positive multiple of num_replicas={num_replicas}")
        if seed < 0 or stream < 0:
            raise ValueError(f"seed={seed} and stream={stream} must be >= 0")
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.num_batches = num_batches
        self.batch_size = batch_size
        self.stream = stream
        self.with_seeds = with_seeds
        self.resume_batch = 0  # batches of this rank to skip on the next pass (mid-epoch resume), then reset

    @property
    def batches_per_rank(self) -> int:
        return self.num_batches // self.num_replicas

    def global_draw(self, epoch: int) -> tuple[Tensor, Tensor]:
        """``(indices, seeds)``, each ``[num_batches, batch_size]``: every process's batches of ``epoch`` in order."""
        gen = torch.Generator().manual_seed(derive_seed(self.seed, self.stream, epoch))
        n = len(self.dataset)
        total = self.num_batches * self.batch_size
        order = torch.cat([torch.randperm(n, generator=gen) for _ in range(math.ceil(total / n))])[:total]
        seeds = (
            torch.randint(2**62, (total,), generator=gen) if self.with_seeds else torch.zeros(total, dtype=torch.long)
        )
        return order.view(self.num_batches, self.batch_size), seeds.view(self.num_batches, self.batch_size)

    def __iter__(self) -> Iterator:
        start, self.resume_batch = self.resume_batch, 0
        order, seeds = (
            x[self.rank :: self.num_replicas][start:].flatten().tolist() for x in self.global_draw(self.epoch)
        )
        return iter(zip(order, seeds)) if self.with_seeds else iter(order)

    def __len__(self) -> int:
        return self.batches_per_rank * self.batch_size


class ResumableLoader(DataLoader):
    """A DataLoader over a ``ShardedRandomSampler`` whose position Lightning checkpoints mid-epoch.

    ``state_dict()`` is ``{"epoch", "batches", "num_replicas"}``: the sampler's epoch and the batches this loader has
    yielded in it (Lightning's training loop fetches without prefetching when the length is known, so that is the
    number of batches trained on). ``load_state_dict`` makes the next pass continue that epoch at the next batch, with
    the same data; a state at the end of an epoch changes nothing (Lightning then starts the next epoch). With another
    sampler (Lightning swaps in a sequential one for ``overfit_batches``) it is a plain DataLoader.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._epoch = 0
        self._batches = 0

    def __iter__(self) -> Iterator:
        # a generator: the sampler's epoch and resume point are read at the first batch, after Lightning's set_epoch
        sampler = self.sampler
        self._epoch = getattr(sampler, "epoch", 0)
        self._batches = getattr(sampler, "resume_batch", 0)
        for batch in super().__iter__():
            self._batches += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {
            "epoch": self._epoch,
            "batches": self._batches,
            "num_replicas": getattr(self.sampler, "num_replicas", 1),
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        sampler = self.sampler
        if not isinstance(sampler, ShardedRandomSampler) or state["batches"] >= sampler.batches_per_rank:
            return  # saved at the end of an epoch
        if state["num_replicas"] != sampler.num_replicas:
            raise ValueError(
                f"this checkpoint was saved mid-epoch by {state['num_replicas']} processes; resume it with "
                f"{state['num_replicas']} (now {sampler.num_replicas}), or resume from a checkpoint saved at an epoch end"
            )
        sampler.set_epoch(state["epoch"])
        sampler.resume_batch = state["batches"]


def sharded_loader(
    dataset: Dataset,
    num_batches: int,
    batch_size: int,
    seed: int,
    stream: int,
    trainer=None,
    with_seeds: bool = False,
    **kwargs,
) -> ResumableLoader:
    """A ``ResumableLoader`` over a ``ShardedRandomSampler`` for the trainer's process grid (see both); ``kwargs``
    go to the DataLoader."""
    world, rank = process_grid(trainer)
    sampler = ShardedRandomSampler(dataset, num_batches, batch_size, seed, stream, world, rank, with_seeds)
    # own generator: starting a pass draws its worker base seed from it, not from the global RNG (exact resume)
    generator = torch.Generator().manual_seed(derive_seed(seed, stream, rank, 1))
    return ResumableLoader(
        dataset, batch_size=batch_size, sampler=sampler, drop_last=True, generator=generator, **kwargs
    )


__all__ = ["ResumableLoader", "ShardedRandomSampler", "derive_seed", "global_batches", "process_grid", "sharded_loader"]
