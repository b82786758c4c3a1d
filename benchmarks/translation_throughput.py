"""Training throughput (images/s) of CycleGAN, CR-CycleGAN and ACCR measured side by side in one run.

    python benchmarks/translation_throughput.py [--batch 64] [--size 32] [--steps 10] [--width 32] [--blocks 6]

One "image" is one A image plus one B image (one training pair). Each step is a full manual-optimization
training step (G update then D update). Methods run interleaved round by round so that machine noise hits
all of them alike; the table reports the median step time and the ratio to CycleGAN.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lightning_modules import ACCR, CRCycleGAN, CycleGAN  # noqa: E402
from nets import PatchDiscriminator, ResnetGenerator  # noqa: E402


class _Trainerless:
    """The few Trainer services a manual-optimization training_step needs, without a Trainer loop."""

    def __init__(self, module) -> None:
        self.module = module
        opts, _ = module.configure_optimizers()
        self.opts = opts
        module.optimizers = lambda: self.opts
        module.toggle_optimizer = lambda opt: None
        module.untoggle_optimizer = lambda opt: None
        module.manual_backward = lambda loss: loss.backward()
        module.log_dict = lambda *a, **k: None


def build(cls, width: int, blocks: int, d_width: int):
    nets = dict(
        g_ab=ResnetGenerator(width=width, n_blocks=blocks),
        g_ba=ResnetGenerator(width=width, n_blocks=blocks),
        d_a=PatchDiscriminator(width=d_width),
        d_b=PatchDiscriminator(width=d_width),
    )
    module = cls(**nets)
    _Trainerless(module)
    return module


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--blocks", type=int, default=6)
    p.add_argument("--d-width", type=int, default=64)
    args = p.parse_args()
    torch.manual_seed(0)
    methods = {"CycleGAN": CycleGAN, "CR-CycleGAN": CRCycleGAN, "ACCR": ACCR}
    modules = {name: build(cls, args.width, args.blocks, args.d_width) for name, cls in methods.items()}
    batch = {
        "a": (torch.rand(args.batch, 3, args.size, args.size) * 2 - 1, None),
        "b": (torch.rand(args.batch, 3, args.size, args.size) * 2 - 1, None),
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    for step in range(args.warmup + args.steps):
        for name, module in modules.items():
            start = time.perf_counter()
            module.training_step(batch, step)
            if step >= args.warmup:
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["CycleGAN"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.size}x{args.size}, "
          f"G width {args.width} blocks {args.blocks}, D width {args.d_width}, {args.steps} steps each")  # fmt: skip
    print("| method | median step (s) | images/s | time vs CycleGAN |\n|---|---|---|---|")
    for name, t in times.items():
        med = statistics.median(t)
        print(f"| {name} | {med:.3f} | {args.batch / med:.1f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
