"""Verification at VoxCeleb1-O scale: evaluation trials/s and peak memory of the former one-trial-at-a-time loop
and of the cached loop, and i-vector training memory of the former full-batch EM and of streaming EM, side by side
in one run.

    python benchmarks/verification_scale.py [--old-trials 1000] [--train-sizes 50 100 200]

The trial list is VoxCeleb1-O-sized and synthetic: 40 speakers x 122 utterances (4,880; VoxCeleb1-O has 4,874),
37,720 trials (half target), utterances 1-2 s (VoxCeleb1-O's are 4-20 s), written once to
.cache/coadv/vox1o_bench/ and reused. Every measurement runs in its own process (OMP_NUM_THREADS=1, no DataLoader
workers). Memory is resident memory, which counts torch's tensors (tracemalloc does not): the peak is ``VmHWM`` of
/proc/self/status, restarted just before the measured work (``/proc/self/clear_refs``, Linux), and "growth" is that
peak minus the resident memory at that moment. The former loop scores the first ``--old-trials`` trials (the list is in random order) and its time for the
whole list is extrapolated from its rate, as the table says; its memory does not grow with the number of trials.
Victims have random weights (the i-vector is first fitted on 100 utterances): the cost does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from datamodules.audio import SAMPLE_RATE, UtteranceDataset, pad_utterances, read_wave
from datamodules.voxceleb import VoxCelebDataModule
from lightning_modules import IVectorSystem, SpeakerEmbedding
from lightning_modules.verification import verification_metrics
from nets.speaker import ECAPATDNN, IVector

CORPUS = Path(".cache/coadv/vox1o_bench")
SPEAKERS = 40
UTTERANCES = 122
TRIALS = 37720


def write_corpus(root: Path = CORPUS, seed: int = 0) -> Path:
    """The synthetic VoxCeleb1-O-sized list (reused when its trial list exists: that file is written last)."""
    from datamodules.synth_speech import speaker_profile, synthesize

    if (root / "veri_test.txt").is_file():
        return root
    rng = np.random.default_rng(seed)
    files = []
    for s in range(SPEAKERS):
        spk = speaker_profile(rng)
        (root / "wav" / f"id{10001 + s}" / "vid00").mkdir(parents=True, exist_ok=True)
        for u in range(UTTERANCES):
            files.append(f"id{10001 + s}/vid00/{u + 1:05d}.wav")
            sf.write(root / "wav" / files[-1], synthesize(rng, spk, rng.uniform(1.0, 2.0), 30.0), SAMPLE_RATE)
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < TRIALS:  # half target (same folder), half non-target, no pair twice
        a = int(rng.integers(len(files)))
        same = len(pairs) % 2 == 0
        b = a // UTTERANCES * UTTERANCES + int(rng.integers(UTTERANCES)) if same else int(rng.integers(len(files)))
        if a != b and (a // UTTERANCES == b // UTTERANCES) == same and (a, b) not in pairs:
            pairs.add((a, b))
    order = rng.permutation(len(pairs))
    listed = sorted(pairs)
    lines = [f"{int(a // UTTERANCES == b // UTTERANCES)} {files[a]} {files[b]}" for a, b in (listed[i] for i in order)]
    (root / "veri_test.txt").write_text("\n".join(lines) + "\n")
    return root


class OneAtATime(L.LightningModule):
    """The former evaluation loop (``TrialScoring.score_batch`` before the cache): both sides of every trial
    embedded, one trial at a time, at their true lengths, from padded trial batches."""

    def __init__(self, victim) -> None:
        super().__init__()
        self.victim = victim
        self._scores = []
        self._labels = []

    @torch.no_grad()
    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        for i in range(len(batch["label"])):
            enrol = batch["enrol"][i : i + 1, : int(batch["enrol_len"][i])]
            test = batch["test"][i : i + 1, : int(batch["test_len"][i])]
            self._scores.append(self.victim.score(enrol, test)[0])
        self._labels.append(batch["label"])

    def on_validation_epoch_end(self) -> None:
        scores = torch.stack(self._scores)
        labels = torch.cat(self._labels)
        self.last_scores = (scores, labels)
        self.log_dict({f"val/{k}": v for k, v in verification_metrics(scores, labels).items()})


def old_fit(victim: IVector, files: list[Path], speakers: Tensor, ubm_iterations: int, tv_iterations: int) -> None:
    """The former ``IVectorSystem.on_fit_start`` + ``IVector.fit``: every wave and frame in memory, the UBM's
    E-step over all frames at once (``[frames, C, D]``), per-utterance statistics stacked."""
    waves = [read_wave(f) for f in files]
    frames = [victim.frames(w[None])[0] for w in waves]
    x = torch.cat(frames)
    victim.means.copy_(x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[: len(victim.means)]])
    victim.variances.copy_(x.var(0).expand_as(victim.variances))
    for _ in range(ubm_iterations):
        gamma = victim.log_likelihoods(x).softmax(-1)
        n = gamma.sum(0) + 1e-6
        means = gamma.T @ x / n[:, None]
        victim.variances.copy_((gamma.T @ (x * x) / n[:, None] - means * means).clamp(min=1e-3 * x.var(0)))
        victim.means.copy_(means)
        victim.log_weights.copy_((n / n.sum()).log())
    stats = [tuple(s[0] for s in victim.statistics(u[None])) for u in frames]
    n = torch.stack([s[0] for s in stats])
    f = torch.stack([s[1] for s in stats])
    for _ in range(tv_iterations):
        w, precision = victim.ivectors(n, f)
        ww = torch.linalg.inv(precision) + w.unsqueeze(-1) * w.unsqueeze(-2)
        a = torch.einsum("bc,brs->crs", n, ww)
        c = torch.einsum("bcd,br->cdr", f, w)
        victim.T.copy_(torch.linalg.solve(a, c.transpose(1, 2)).transpose(1, 2))
    victim.fit_backend(victim.ivectors(n, f)[0], speakers)


class Batches:
    """``(waves at true length, speakers)`` batches of a DataLoader over whole files: what IVectorSystem streams."""

    def __init__(self, files: list[str], speakers: Tensor, batch_size: int = 16) -> None:
        dataset = UtteranceDataset(CORPUS / "wav", files, None)
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=pad_utterances)
        self.speakers = speakers

    def __iter__(self):
        for b in self.loader:
            yield [w[:n] for w, n in zip(b["wave"], b["length"].tolist())], self.speakers[b["index"]]


def memory_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last ``reset_peak``) of this process, from /proc/self/status."""
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())[1]) / 1024


def reset_peak() -> float:
    """Restart the peak (``VmHWM``) at the current resident memory (Linux >= 4.0); returns that memory (MB)."""
    Path("/proc/self/clear_refs").write_text("5")
    return memory_mb("VmRSS")


def measured(work) -> dict:
    """Wall time, peak resident memory and its growth over the memory before ``work()``."""
    base = reset_peak()
    start = time.perf_counter()
    work()
    seconds = time.perf_counter() - start
    peak = memory_mb("VmHWM")
    return {"seconds": seconds, "peak": peak, "growth": peak - base}


def training_files(n: int) -> tuple[list[str], Tensor]:
    """``n`` files spread over the speakers (the first utterances of each, in turn) and speaker indices."""
    per = -(-n // SPEAKERS)
    files = [f"id{10001 + s}/vid00/{u + 1:05d}.wav" for u in range(per) for s in range(SPEAKERS)][:n]
    return files, torch.tensor([int(f[2:7]) - 10001 for f in files])


def child_eval(job: dict) -> dict:
    if job["victim"] == "ecapa":
        victim = ECAPATDNN(channels=128).eval()
    else:
        victim = IVector(n_components=32, rank=50, lda_dim=20)
        victim.fit(Batches(*training_files(100)), ubm_iterations=3, tv_iterations=2)
    old = job["loop"] == "old"
    model = OneAtATime(victim) if old else (SpeakerEmbedding if job["victim"] == "ecapa" else IVectorSystem)(victim)
    dm = VoxCelebDataModule(
        root=str(CORPUS),
        eval_batch_size=32,
        eval_max_seconds=job["eval_max"],
        max_trials=job["trials"] if old else None,
    )
    trainer = L.Trainer(
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        enable_checkpointing=False,
    )
    result = measured(lambda: trainer.validate(model, dm, verbose=False))
    return {**result, "trials": len(model.last_scores[0])}


def child_train(job: dict) -> dict:
    files, speakers = training_files(job["n"])
    victim = IVector(n_components=32, rank=50, lda_dim=20)
    if job["mode"] == "old":
        return measured(lambda: old_fit(victim, [CORPUS / "wav" / f for f in files], speakers, 5, 3))
    return measured(lambda: victim.fit(Batches(files, speakers), ubm_iterations=5, tv_iterations=3))


def run(job: dict) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(job)], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{job} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def evaluation_table(old_trials: int) -> None:
    print(f"\nEvaluation, {TRIALS:,} trials (old loop: first {old_trials:,} trials, time for all extrapolated)")
    print(
        "| victim | utterances | loop | trials scored | trials/s | time for all trials (s) | peak RSS (MB) | "
        "growth (MB) |\n|---|---|---|---|---|---|---|---|"
    )
    for victim, eval_max, label in (
        ("ecapa", None, "ECAPA C=128"),
        ("ecapa", 1.0, "ECAPA C=128"),
        ("ivector", None, "i-vector 32 x 50"),
    ):
        length = "whole (1-2 s)" if eval_max is None else f"cut to {eval_max:g} s (equal: batched)"
        rates = {}
        for loop in ("old", "new"):
            r = run({"kind": "eval", "victim": victim, "loop": loop, "eval_max": eval_max, "trials": old_trials})
            rates[loop] = r["trials"] / r["seconds"]
            note = " (extrapolated)" if r["trials"] < TRIALS else ""
            print(
                f"| {label} | {length} | {loop} | {r['trials']:,} | {rates[loop]:.1f} | "
                f"{TRIALS / rates[loop]:.0f}{note} | {r['peak']:.0f} | {r['growth']:.0f} |",
                flush=True,
            )
        print(f"| {label} | {length} | new / old | | {rates['new'] / rates['old']:.1f}x | | | |", flush=True)


def training_table(sizes: list[int]) -> None:
    print("\ni-vector training (32 components, rank 50, UBM 5 + TV 3 EM iterations), streaming batches of 16")
    print("| utterances | EM | time (s) | peak RSS (MB) | growth (MB) |\n|---|---|---|---|---|")
    for n in sizes:
        for mode in ("old", "stream"):
            r = run({"kind": "train", "mode": mode, "n": n})
            print(
                f"| {n} | {'full batch' if mode == 'old' else 'streaming'} | {r['seconds']:.1f} | "
                f"{r['peak']:.0f} | {r['growth']:.0f} |",
                flush=True,
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old-trials", type=int, default=1000, help="trials the former loop scores (then extrapolated)")
    p.add_argument("--train-sizes", type=int, nargs="+", default=[50, 100, 200])
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        job = json.loads(args.child)
        print(json.dumps(child_eval(job) if job["kind"] == "eval" else child_train(job)))
        return
    start = time.perf_counter()
    write_corpus()
    print(
        f"corpus {CORPUS} ready in {time.perf_counter() - start:.0f} s; torch {torch.__version__}, 1 thread per "
        "process; memory = peak resident memory (VmHWM) of the measured work in its own process"
    )
    evaluation_table(args.old_trials)
    training_table(args.train_sizes)


if __name__ == "__main__":
    main()
