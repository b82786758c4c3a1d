"""DDP's cost in GAN training, measured side by side in one run.

    python benchmarks/ddp_strategies.py [--steps 20] [--batch 16] [--width 16] [--blocks 3]

Trains ACCR (M -> MM, embedded digits) with 2 CPU processes (gloo) under ``ddp_find_unused_parameters_true``
and one process on the same global batch (2 x ``--batch``),
alternating over ``--rounds`` rounds, and prints the median training-step time of each and their ratios.
1 thread per process (on 2 cores the single process leaves one core idle: its row is the DDP overhead bound).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")

import lightning as L  # noqa: E402
import torch  # noqa: E402

from datamodules import UnpairedDigitsDataModule  # noqa: E402
from lightning_modules import ACCR  # noqa: E402
from nets import PatchDiscriminator, ResnetGenerator  # noqa: E402


class StepTimer(L.Callback):
    def __init__(self, out: str, warmup: int) -> None:
        self.out = out
        self.warmup = warmup
        self.times = []
        self.start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx >= self.warmup:
            self.times.append(time.perf_counter() - self.start)

    def on_train_end(self, trainer, pl_module):
        if trainer.is_global_zero:
            Path(self.out).write_text(json.dumps(self.times))


def run(strategy, args, out: str, devices: int = 2) -> list[float]:
    L.seed_everything(0)
    model = ACCR(
        g_ab=ResnetGenerator(width=args.width, n_blocks=args.blocks),
        g_ba=ResnetGenerator(width=args.width, n_blocks=args.blocks),
        d_a=PatchDiscriminator(width=2 * args.width),
        d_b=PatchDiscriminator(width=2 * args.width),
    )
    steps = args.steps + args.warmup  # batches_per_epoch counts the batches of all processes
    dm = UnpairedDigitsDataModule(
        "mnist", "mnist_m", batch_size=args.batch * 2 // devices, batches_per_epoch=steps * devices
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        max_epochs=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[StepTimer(out, args.warmup)],
    )
    trainer.fit(model, dm)
    return json.loads(Path(out).read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--blocks", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    from lightning.pytorch.strategies import DDPStrategy

    strategies = {
        "ddp_find_unused_parameters_true": lambda: DDPStrategy(find_unused_parameters=True, start_method="spawn"),
        "1 process, batch x2": lambda: "auto",
    }
    times: dict[str, list[float]] = {name: [] for name in strategies}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, make in strategies.items():
                times[name] += run(make(), args, f"{tmp}/{r}.json", devices=1 if name.startswith("1 ") else 2)
    base = statistics.median(times["ddp_find_unused_parameters_true"])
    print(
        f"ACCR, 2 CPU processes (gloo), batch {args.batch}/process, G width {args.width} blocks {args.blocks}, "
        f"{args.rounds} x {args.steps} timed steps per strategy"
    )
    print("| strategy | median step (s) | vs find_unused |\n|---|---|---|")
    for name, t in times.items():
        print(f"| {name} | {statistics.median(t):.4f} | {statistics.median(t) / base:.3f}x |")


if __name__ == "__main__":
    main()
