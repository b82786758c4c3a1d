"""Training throughput (images/s) of CycleGAN, CR-CycleGAN and ACCR against a plain PyTorch loop that follows the
original CycleGAN code's ``optimize_parameters`` (``benchmarks/plain_cyclegan.py``), side by side in one run, on
identical nets (same initial weights) and inputs.

    python benchmarks/translation_throughput.py                                 # CPU, fp32, default levers (none)
    python benchmarks/translation_throughput.py --levers batched,channels_last --harness both
    python benchmarks/translation_throughput.py --preset cpu --precision bf16-mixed --harness both   # demo-sized
    python benchmarks/translation_throughput.py --preset gpu                    # CUDA, bf16, every lever, batch 256

One image = one A image plus one B image (a training pair); one step = G update then D update.
``--harness trainerless``: each module's ``training_step`` runs without a Trainer, optimizers toggled as Lightning's
``toggle_optimizer`` does, under ``torch.autocast`` when ``--precision bf16-mixed`` (as Lightning wraps the step);
rows run interleaved round by round so that machine load hits all alike. ``--harness trainer``: each method is fitted
by a Trainer whose callback runs one plain-loop step after each training step, so each ratio comes from one fit.
Tables report medians over ``--steps`` steps after ``--warmup`` and the ratio of images/s to the plain loop's.
Levers (same nets, same math up to float rounding): ``batched`` (one forward per net for translation + identity
and for real + fake), ``channels_last``, ``compile``, ``fused`` (fused Adam; CUDA); ``--precision bf16-mixed`` changes
the precision (not the same math: reported as its own rows). Print ``--help`` for sizes.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/...` from a checkout

import torch  # noqa: E402

from benchmarks.plain_cyclegan import PlainCycleGAN  # noqa: E402

LEVERS = ("batched", "channels_last", "compile", "fused")
PRESETS = {  # gpu: bf16 autocast, every lever, 256 pairs (32 px images leave a GPU idle at 64); cpu: the demo's sizes
    "gpu": dict(
        device="cuda",
        precision="bf16-mixed",
        levers="batched,channels_last,compile,fused",
        batch=256,
        steps=30,
        warmup=8,
        harness="both",
    ),
    "cpu": dict(device="cpu", precision="32", levers="", batch=32, width=16, blocks=3, d_width=32, steps=8, warmup=2),
}


class Trainerless:
    """The Trainer services a manual-optimization ``training_step`` needs: its optimizers, ``toggle_optimizer`` /
    ``untoggle_optimizer`` with Lightning's semantics (parameters of the other optimizers frozen during a step),
    ``manual_backward`` and a no-op ``log_dict``; ``configure_model`` runs as a Trainer would run it."""

    def __init__(self, module, precision: str = "32", device: str = "cpu") -> None:
        module.configure_model()
        self.module = module.to(device)
        self.device = device
        self.opts, _ = module.configure_optimizers()
        self.params = [p for opt in self.opts for group in opt.param_groups for p in group["params"]]
        self.saved: dict = {}
        module.optimizers = lambda: self.opts
        module.toggle_optimizer = self.toggle
        module.untoggle_optimizer = self.untoggle
        module.manual_backward = lambda loss: loss.backward()
        module.log_dict = lambda *args, **kwargs: None
        bf16 = precision == "bf16-mixed"
        self.autocast = partial(torch.autocast, device, dtype=torch.bfloat16) if bf16 else nullcontext

    def toggle(self, optimizer) -> None:
        self.saved = {p: p.requires_grad for p in self.params}
        mine = {p for group in optimizer.param_groups for p in group["params"]}
        for p in self.params:
            p.requires_grad = self.saved[p] if p in mine else False

    def untoggle(self, optimizer) -> None:
        for p, flag in self.saved.items():
            p.requires_grad = flag
        self.saved = {}

    def step(self, batch: dict, index: int = 0) -> None:
        with self.autocast():
            self.module.training_step(batch, index)


def fused_adam(params, lr: float = 2e-4):
    return torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999), fused=True)


def build(cls, nets: dict, levers: set[str]):
    """``cls`` on copies of ``nets`` (their initial weights kept: ``init_std=None``) with ``levers`` switched on."""
    kwargs = dict(
        init_std=None,
        batched_passes="batched" in levers,
        channels_last="channels_last" in levers,
        compile="compile" in levers,
    )
    if "fused" in levers:
        kwargs.update(generator_optimizer=fused_adam, discriminator_optimizer=fused_adam)
    return cls(**copy.deepcopy(nets), **kwargs)


def make_nets(args) -> dict:
    from nets import PatchDiscriminator, ResnetGenerator, init_weights

    torch.manual_seed(0)
    nets = dict(
        g_ab=ResnetGenerator(width=args.width, n_blocks=args.blocks),
        g_ba=ResnetGenerator(width=args.width, n_blocks=args.blocks),
        d_a=PatchDiscriminator(width=args.d_width),
        d_b=PatchDiscriminator(width=args.d_width),
    )
    return {k: init_weights(v) for k, v in nets.items()}


def plain_loop(nets: dict, device: str) -> PlainCycleGAN:
    return PlainCycleGAN(**{k: copy.deepcopy(v).to(device) for k, v in nets.items()})


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def trainerless_rows(args, nets: dict, methods: dict, levers: set[str], batch: dict) -> dict[str, list[float]]:
    """Interleaved step times of the plain loop and each module, without a Trainer."""
    real_a = batch["a"][0]
    real_b = batch["b"][0]
    plain = plain_loop(nets, args.device)
    rows = {"plain loop (original optimize_parameters), fp32": lambda i: plain.optimize_parameters(real_a, real_b)}
    if args.precision != "32":  # the original loop under the same autocast: what the precision alone gives
        plain_autocast = plain_loop(nets, args.device)
        autocast = partial(torch.autocast, args.device, torch.bfloat16)

        def plain_in_autocast(i: int) -> None:
            with autocast():
                plain_autocast.optimize_parameters(real_a, real_b)

        rows[f"plain loop, {args.precision} (autocast)"] = plain_in_autocast
    label = f"{'+'.join(sorted(levers)) or 'no levers'}, {args.precision}"
    if levers or args.precision != "32":  # the project's step as the reference computes it, for comparison
        from lightning_modules import CycleGAN

        reference = Trainerless(build(CycleGAN, nets, set()), "32", args.device)
        rows["CycleGAN, no levers, 32"] = partial(lambda h, i: h.step(batch, i), reference)
    for name, cls in methods.items():
        harness = Trainerless(build(cls, nets, levers), args.precision, args.device)
        rows[f"{name}, {label}"] = partial(lambda h, i: h.step(batch, i), harness)
    times: dict[str, list[float]] = {name: [] for name in rows}
    for step in range(args.warmup + args.steps):
        for name, run in rows.items():
            sync(args.device)
            start = time.perf_counter()
            run(step)
            sync(args.device)
            if step >= args.warmup:
                times[name].append(time.perf_counter() - start)
    return times


def trainer_rows(args, nets: dict, methods: dict, levers: set[str], batch: dict) -> dict[str, list[float]]:
    """Per method, one Trainer fit whose callback runs a plain-loop step after each training step."""
    import lightning as L
    from torch.utils.data import DataLoader

    class Alternate(L.Callback):
        def __init__(self) -> None:
            self.plain = plain_loop(nets, args.device)
            self.starts: list[float] = []
            self.plain_times: list[float] = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            sync(args.device)
            self.starts.append(time.perf_counter())

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            sync(args.device)
            start = time.perf_counter()
            self.plain.optimize_parameters(batch["a"][0], batch["b"][0])
            sync(args.device)
            self.plain_times.append(time.perf_counter() - start)

    times: dict[str, list[float]] = {}
    n = args.warmup + args.steps + 1
    fits = [(name, cls, levers, args.precision) for name, cls in methods.items()]
    if levers or args.precision != "32":  # the project's step as the reference computes it, for comparison
        from lightning_modules import CycleGAN

        fits.insert(0, ("CycleGAN", CycleGAN, set(), "32"))
    for name, cls, row_levers, precision in fits:
        callback = Alternate()
        trainer = L.Trainer(
            accelerator=args.device,
            devices=1,
            precision=precision,
            max_epochs=1,
            limit_val_batches=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[callback],
            log_every_n_steps=10,
        )
        loader = DataLoader([batch] * n, batch_size=None, collate_fn=lambda b: b)  # the same batch n times
        trainer.fit(build(cls, nets, row_levers), train_dataloaders=loader)
        # one iteration = from one batch start to the next, minus the plain step run in between
        steps = [b - a - p for a, b, p in zip(callback.starts, callback.starts[1:], callback.plain_times)]
        label = f"{name} through the Trainer, {'+'.join(sorted(row_levers)) or 'no levers'}, {precision}"
        times[f"plain loop, in the fit of {label}"] = callback.plain_times[args.warmup : n - 1]
        times[label] = steps[args.warmup :]
    return times


def print_table(title: str, times: dict[str, list[float]], batch: int, reference: dict[str, str]) -> None:
    print(f"\n{title}\n| row | median step (s) | images/s | x plain loop |\n|---|---|---|---|")
    for name, t in times.items():
        med = statistics.median(t)
        ref = statistics.median(times[reference.get(name, next(iter(times)))])
        print(f"| {name} | {med:.4f} | {batch / med:.1f} | {ref / med:.2f} |")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), help="a set of the flags below (explicit flags still win)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--width", type=int, default=32, help="generator width")
    p.add_argument("--blocks", type=int, default=6, help="generator residual blocks")
    p.add_argument("--d-width", type=int, default=64)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--precision", default="32", choices=("32", "bf16-mixed"))
    p.add_argument("--levers", default="", help=f"comma-separated, of {', '.join(LEVERS)}")
    p.add_argument("--methods", default="CycleGAN,CR-CycleGAN,ACCR")
    p.add_argument("--harness", default="trainerless", choices=("trainerless", "trainer", "both"))
    args = p.parse_args(argv)
    if args.preset:
        given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in (argv if argv is not None else sys.argv[1:])}
        for key, value in PRESETS[args.preset].items():
            if key not in given:
                setattr(args, key, value)
    levers = {x for x in args.levers.split(",") if x}
    if levers - set(LEVERS):
        p.error(f"--levers: unknown {sorted(levers - set(LEVERS))}; choose from {', '.join(LEVERS)}")
    args.levers = levers
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    from lightning_modules import ACCR, CRCycleGAN, CycleGAN

    known = {"CycleGAN": CycleGAN, "CR-CycleGAN": CRCycleGAN, "ACCR": ACCR}
    methods = {name: known[name] for name in args.methods.split(",")}
    nets = make_nets(args)
    torch.manual_seed(1)
    shape = (args.batch, 3, args.size, args.size)
    batch = {k: ((torch.rand(shape) * 2 - 1).to(args.device), None) for k in ("a", "b")}
    threads = torch.get_num_threads()
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {threads} threads"
    print(
        f"torch {torch.__version__}, {device}; batch {args.batch} of {args.size}x{args.size}; G width {args.width}, "
        f"{args.blocks} blocks; D width {args.d_width}; {args.steps} steps after {args.warmup} warm-up"
    )
    if args.harness in ("trainerless", "both"):
        times = trainerless_rows(args, nets, methods, args.levers, batch)
        print_table("Without a Trainer (rows interleaved per step):", times, args.batch, {})
    if args.harness in ("trainer", "both"):
        times = trainer_rows(args, nets, methods, args.levers, batch)
        pairs = {name: name if name.startswith("plain") else f"plain loop, in the fit of {name}" for name in times}
        print_table(
            "Through the Trainer (each fit alternates its steps with plain-loop steps):", times, args.batch, pairs
        )


if __name__ == "__main__":
    main()
