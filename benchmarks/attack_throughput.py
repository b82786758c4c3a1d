"""Attack throughput (trials/s): one trial at a time vs equal-length trials batched, measured side by side in one run.

    python benchmarks/attack_throughput.py [--trials 8] [--seconds 1.0] [--device cpu|cuda]

The victim is an ECAPA-TDNN with random weights (C=128, the synthetic-corpus config; timing does not need a
trained one); the attacks are those of ``configs/attack/<name>.yaml`` against ECAPA at their configured settings. Every
trial's test utterance has the same length (one group when batched), enrolments have different lengths (each
embedded at its own). The threshold is the median clean score and each trial's label is chosen so that the victim
decides it correctly when clean: every trial is attacked, with a success margin ``--kappa``. Both modes run ``AdversarialAttack`` on the same batch
(``batch_trials`` false / true, no PESQ / STOI); the table also shows the largest per-trial difference of the
attacked score between the two: float noise for deterministic searches (random draws come from per-trial generators, so they do not depend on
the batch either), more for searches that take many data-dependent branches (the quasi-Newton line search).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
from jsonargparse import ArgumentParser

from attacks import Attack
from coadv.compare import configs
from datamodules.audio import pad_waves
from lightning_modules import AdversarialAttack
from lightning_modules.attack_metrics import COLUMNS
from nets.speaker import ECAPATDNN


def config_attack(name: str) -> Attack:
    """The attack of ``configs/attack/<name>.yaml`` against ECAPA (tuned values included), as LightningCLI builds it."""
    block = configs.merged(name, "ecapa")["model"]["init_args"]["attack"]
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(Attack, "attack")
    return parser.instantiate(parser.parse_object({"attack": block})).attack


def tone(n: int, seed: int) -> torch.Tensor:
    """A few harmonics of a random pitch plus a little noise, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    f0 = 100 + 150 * torch.rand((), generator=g)
    wave = sum(torch.sin(2 * math.pi * k * f0 * t + torch.rand((), generator=g) * 6) / k for k in range(1, 6))
    return 0.3 * wave / wave.abs().max() + 0.01 * torch.randn(n, generator=g)


def make_trials(victim: ECAPATDNN, trials: int, seconds: float, folder: Path) -> tuple[dict, Path]:
    """A batch of trials (equal test lengths, enrolments from 0.8x to 1.2x as long) and a victim checkpoint whose
    threshold (the median clean score) every trial is decided correctly against."""
    n = int(seconds * 16000)
    enrol, enrol_len = pad_waves(tuple(tone(int(n * (0.8 + 0.4 * i / max(trials - 1, 1))), i) for i in range(trials)))
    test, test_len = pad_waves(tuple(tone(n, 1000 + i) for i in range(trials)))
    with torch.no_grad():
        scores = torch.stack(
            [victim.score(enrol[i : i + 1, : int(enrol_len[i])], test[i : i + 1])[0] for i in range(trials)]
        )
    threshold = float(scores.median())
    labels = (scores >= threshold).long()  # accepted <=> target: correct when clean
    path = folder / "ecapa_random.ckpt"
    state = {f"victim.{k}": v for k, v in victim.state_dict().items()}
    torch.save({"state_dict": state, "verification": {"threshold": threshold}}, path)
    batch = {
        "enrol": enrol,
        "enrol_len": enrol_len,
        "test": test,
        "test_len": test_len,
        "label": labels,
        "index": torch.arange(trials),
    }
    return batch, path


def timed(model: AdversarialAttack, batch: dict, device: torch.device) -> tuple[float, torch.Tensor]:
    """Seconds for one ``_attack_batch`` call and its rows."""
    batch = {k: v.to(device) for k, v in batch.items()}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    trials = model._attack_batch(batch)["trials"]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, torch.stack([trials[name] for name in COLUMNS], 1)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=8, help="trials per batch, all of one test length (8)")
    p.add_argument("--seconds", type=float, default=1.0, help="test utterance length (1.0)")
    p.add_argument("--channels", type=int, default=128, help="ECAPA-TDNN C (128)")
    p.add_argument("--attacks", nargs="+", default=["pgd_linf", "qn_lbfgs"], help="configs/attack/<name>.yaml")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    # random weights put every clean score within ~0.01 of the median: a margin makes the searches run several
    # steps, as on a trained victim, instead of stopping after one or two
    p.add_argument("--kappa", type=float, default=0.01, help="success margin in score units (0.01)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    victim = ECAPATDNN(channels=args.channels).eval()
    print(
        f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, ECAPA-TDNN C={args.channels} "
        f"(random weights), {args.trials} trials x {args.seconds:g} s"
    )
    print("| attack | grad evals / trial | success | batch 1: trials/s | batched: trials/s | speed-up | max Δ score |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        batch, path = make_trials(victim, args.trials, args.seconds, Path(folder))
        for name in args.attacks:
            attack, result = config_attack(name), {}
            for batched in (False, True):
                model = AdversarialAttack(
                    str(path),
                    attack,
                    victim=ECAPATDNN(channels=args.channels),
                    batch_trials=batched,
                    perceptual=False,
                    kappa=args.kappa,
                )
                model.setup("test")
                model.to(device)
                timed(model, {k: v[:1] for k, v in batch.items()}, device)  # warm-up (allocator, kernels)
                result[batched] = timed(model, batch, device)
            (t1, rows1), (tb, rowsb) = result[False], result[True]
            col = {c: i for i, c in enumerate(COLUMNS)}
            evals = float(rows1[:, col["grad_evals"]].mean())
            success = float(rows1[:, col["success"]].mean())
            diff = float((rows1[:, col["score_after"]] - rowsb[:, col["score_after"]]).abs().max())
            print(
                f"| {name} | {evals:.1f} | {success:.2f} | {args.trials / t1:.2f} | {args.trials / tb:.2f} | "
                f"{t1 / tb:.2f}x | {diff:.1e} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
