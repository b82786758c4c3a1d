"""How far a batched forward pass moves a victim's score: the float noise that sets the attacks' common margin κ.

    python benchmarks/score_noise.py checkpoints/victims/ge2e_libri.ckpt checkpoints/victims/ivector_libri.ckpt ...

For each victim checkpoint: the first ``--utterances`` distinct test utterances of the embedded LibriSpeech trial
list (the GE2E victim reads them preprocessed as its config does), cut to their common length; the first one is the
enrolment side. Each test utterance is scored alone, inside one batch of all of them, and inside batches of 4 in
reversed order (other companions, other positions). Printed per victim: the largest and the median |Δscore|
between batched and alone, and 10x the largest; the last line is the common κ (10x the largest over the victims,
rounded up to one significant digit). The configs' ``KAPPA`` = 1e-5 covers the CPU figures with room to spare.
On a GPU, rerun it there: TF32 convolutions / matmuls (on by default for cuDNN convolutions) move scores far more
than float32 on a CPU, and a search's successes then need a larger margin (the reported success is always the
decision scored alone, so it stays true; only more searches would end on a reversed success).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from datamodules.audio import read_wave
from datamodules.librispeech import EMBEDDED
from datamodules.trials import read_trials
from lightning_modules.attack import load_victim
from nets.speaker import GE2EResemblyzer


def utterances(count: int, preprocess: str | None) -> torch.Tensor:
    trials = read_trials(EMBEDDED / "veri_test.txt", EMBEDDED / "wav")
    names = list(dict.fromkeys(t.test for t in trials))[:count]
    waves = [read_wave(EMBEDDED / "wav" / n, preprocess=preprocess) for n in names]
    n = min(len(w) for w in waves)
    return torch.stack([w[:n] for w in waves])


@torch.no_grad()
def noise(victim: torch.nn.Module, waves: torch.Tensor) -> torch.Tensor:
    """|Δscore| of every (test utterance, batching) against its score alone, ``[2 * (N - 1)]``."""
    enrol = victim.embed(waves[:1])
    tests = waves[1:]
    alone = torch.cat([victim.compare(enrol, victim.embed(t[None])) for t in tests])
    whole = victim.compare(enrol.expand(len(tests), -1), victim.embed(tests))
    reverse = torch.arange(len(tests) - 1, -1, -1)
    fours = torch.cat([victim.embed(tests[reverse[i : i + 4]]) for i in range(0, len(tests), 4)])
    small = torch.empty_like(whole)
    small[reverse] = victim.compare(enrol.expand(len(tests), -1), fours)
    return torch.cat([(whole - alone).abs(), (small - alone).abs()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--utterances", type=int, default=17)
    args = parser.parse_args()
    largest = 0.0
    print("| victim | utterance samples | max abs Δscore | median abs Δscore | 10 x max |")
    print("|---|---|---|---|---|")
    for path in args.checkpoints:
        victim, _, _ = load_victim(path)
        victim.eval()
        waves = utterances(args.utterances, "resemblyzer" if isinstance(victim, GE2EResemblyzer) else None)
        d = noise(victim, waves)
        largest = max(largest, float(d.max()))
        print(
            f"| {path.stem} | {waves.shape[1]} | {float(d.max()):.2e} | {float(d.median()):.2e} | {10 * float(d.max()):.1e} |"
        )
    digits = math.floor(math.log10(10 * largest)) if largest > 0 else -8
    kappa = math.ceil(10 * largest / 10**digits) * 10**digits
    print(f"common kappa (10 x the largest, rounded up): {kappa:.0e}")


if __name__ == "__main__":
    main()
