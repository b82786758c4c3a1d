"""Write the synthetic speech corpus (VoxCeleb1 layout, trial list) to a folder.

coadv corpus .cache/coadv/synth_vox --speakers 40 --videos 2 --utts 4 --trials 400
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from coadv.progress import minutes, summary
from datamodules.synth_speech import write_corpus


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="coadv corpus", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("root", type=Path)
    p.add_argument("--speakers", type=int, default=40)
    p.add_argument("--videos", type=int, default=2)
    p.add_argument("--utts", type=int, default=4, help="utterances per video")
    p.add_argument("--trials", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    start = time.time()
    path = write_corpus(args.root, args.speakers, args.videos, args.utts, n_trials=args.trials, seed=args.seed)
    test = (args.root / "test_speakers.txt").read_text().split()
    print(
        summary(
            f"coadv corpus {args.root}",
            [
                (
                    "speakers",
                    f"{args.speakers} ({args.speakers - len(test)} training, {len(test)} test: test_speakers.txt)",
                ),
                (
                    "utterances",
                    f"{args.speakers * args.videos * args.utts} under {args.root / 'wav'}/<speaker>/<video>/",
                ),
                ("trials", f"{args.trials} in {path}"),
                ("time", minutes(time.time() - start)),
            ],
        )
    )
