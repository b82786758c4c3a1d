"""Embedding throughput (utterances/s) of the three victims on 3 s clips, measured side by side in one run.

    python benchmarks/speaker_throughput.py [--batch 16] [--rounds 5]

Victims at the sizes of the synthetic-corpus configs and of the VoxCeleb1 configs; each round embeds one batch
with every victim in turn (inference mode), the table reports the median and the ratio to the i-vector.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from nets.speaker import ECAPATDNN, IVector, SEResNet34  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    victims = {
        "i-vector (32 x 50, synth config)": IVector(n_components=32, rank=50, lda_dim=20),
        "i-vector (512 x 200, vox1 config)": IVector(n_components=512, rank=200, lda_dim=150),
        "SE-ResNet-34 (width 8, synth config)": SEResNet34(width=8, embedding_dim=128),
        "SE-ResNet-34 (width 32, vox1 config)": SEResNet34(width=32, embedding_dim=128),
        "ECAPA-TDNN (C=128, synth config)": ECAPATDNN(channels=128),
        "ECAPA-TDNN (C=512, vox1 config)": ECAPATDNN(channels=512),
    }
    waves = torch.rand(args.batch, 48000) - 0.5
    times: dict[str, list[float]] = {name: [] for name in victims}
    with torch.inference_mode():
        for r in range(args.rounds + 1):
            for name, victim in victims.items():
                victim.eval()
                start = time.perf_counter()
                victim.embed(waves)
                if r:  # round 0 warms up
                    times[name].append(time.perf_counter() - start)
    base = statistics.median(next(iter(times.values())))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch} x 3 s, {args.rounds} rounds"
    )
    print("| victim | median batch (s) | utterances/s | time vs first |\n|---|---|---|---|")
    for name, t in times.items():
        med = statistics.median(t)
        print(f"| {name} | {med:.3f} | {args.batch / med:.1f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
