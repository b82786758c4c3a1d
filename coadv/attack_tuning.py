"""Tune every attack with the same effort, on trials disjoint from the evaluation trials.

    coadv tune-attacks --victim ge2e --budget 30 --trials 12 --offset 1000 -- --data.init_args.eval_max_seconds=3

Each attack gets a small grid over its one or two main knobs (``GRID``: CW's lr and c, PGD-L2's step, DDN's
initial ε and step α, FMN's α, Gauss-Newton's overshoot, quasi-Newton's c, SSR's η and initial radius), every point
run at one equal budget B (``coadv.attack_budgets``) on the tuning split: ``--trials`` trials starting at list
position ``--offset`` (the evaluation uses the first ``compare-attacks --trials`` trials: keep ``--offset`` past
them). The chosen point has the smallest lower-median ρ over every attacked trial, a failure counting as ρ = ∞
(so success comes first), ties broken by success rate. Writes ``<out>/tuning.md`` (every point and the choice) and
prints the chosen values, which the attack configs then carry with this command.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from pathlib import Path

from coadv import attack_budgets as budgets
from coadv.attack_tables import fmt
from coadv.compare_attacks import Job, run_jobs
from coadv.constants import VICTIMS
from coadv.progress import minutes

PREFIX = "--model.init_args.attack.init_args."
# at most 6 points each, spanning the scales of the victims here (CW lr, PGD step and SSR rho0 in waveform units);
# widened once on GE2E so that no chosen value sits at the edge of its grid (runs/tune/ge2e/tuning.md)
GRID: dict[str, dict[str, list]] = {
    "cw": {"lr": [1e-4, 1e-3, 1e-2], "c": [1.0, 10.0]},
    "pgd_l2": {"step_size": [0.01, 0.03, 0.1]},
    "ddn": {"init_epsilon": [1.0, 3.0], "alpha": [1.0, 3.0]},
    "fmn": {"alpha_init": [0.1, 0.3, 1.0]},
    "gauss_newton+min": {"overshoot": [0.0003, 0.001, 0.005]},
    "qn_lbfgs": {"c": [3.0, 10.0, 30.0]},
    "ssr": {"eta": [0.0001, 0.001], "rho0": [0.003, 0.01]},
}


def points(row: str) -> list[dict]:
    """Every combination of ``row``'s grid."""
    grid = GRID[row]
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def tag(point: dict) -> str:
    return "_".join(f"{k}={'null' if v is None else v}" for k, v in point.items())


def flags(point: dict) -> list[str]:
    return [f"{PREFIX}{k}={'null' if v is None else v}" for k, v in point.items()]


def score(summary: dict) -> tuple[float, float]:
    """Sort key: lower-median ρ over every attacked trial (failure = ∞), then the success rate (higher first)."""
    rho = summary.get("rho_median")
    return (math.inf if rho is None or math.isnan(rho) else rho, -float(summary.get("success_rate") or 0.0))


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="coadv tune-attacks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--victim", required=True, choices=VICTIMS)
    parser.add_argument("--attacks", nargs="+", default=list(GRID), choices=list(GRID))
    parser.add_argument("--budget", type=int, default=30, help="gradient evaluations per trial (30)")
    parser.add_argument("--trials", type=int, default=12, help="trials of the tuning split (12)")
    parser.add_argument("--offset", type=int, default=1000, help="list position of the tuning split (1000)")
    parser.add_argument("--out", type=Path, default=None, help="default runs/tune/<victim>")
    parser.add_argument("--in-process", action="store_true", help="run every point in this process")
    parser.add_argument("extra", nargs="*", help="flags passed to every coadv test run (after --)")
    ns = parser.parse_args(argv)
    if ns.budget < 1 or ns.trials < 1 or ns.offset < 0:
        raise SystemExit("--budget and --trials must be >= 1, --offset >= 0")
    return ns


def main(argv: list[str] | None = None) -> str:
    ns, start = parse(argv), time.time()
    out = ns.out or Path("runs") / "tune" / ns.victim
    extra = [f"--data.init_args.trial_offset={ns.offset}", *ns.extra]
    jobs = {(row, tag(p)): Job(ns.victim, budgets.variant(row), str(ns.budget), out / row / tag(p), ns.trials,
                               [*flags(p), *extra])
            for row in ns.attacks for p in points(row)}  # fmt: skip
    _, failed = run_jobs(list(jobs.values()), force=False, keep_going=True, in_process=ns.in_process)
    command = " ".join(["coadv tune-attacks --victim", ns.victim, "--budget", str(ns.budget), "--trials",
                        str(ns.trials), "--offset", str(ns.offset), *(["--", *ns.extra] if ns.extra else [])])  # fmt: skip
    lines = ["# Attack tuning", "", f"`{command}`", "",
             f"Tuning split: trials {ns.offset}-{ns.offset + ns.trials - 1} of the list, B = {ns.budget}; chosen: "
             "smallest lower-median ρ over every attacked trial (failure = ∞), then highest success.", "",
             "| attack | point | success | median ρ (failure = ∞) | chosen |", "|---|---|---|---|---|"]  # fmt: skip
    chosen = {}
    for row in ns.attacks:
        results = {}
        for p in points(row):
            job = jobs[(row, tag(p))]
            if job in failed or not job.summary_path.is_file():
                continue
            results[tag(p)] = (p, json.loads(job.summary_path.read_text()))
        best = min(results, key=lambda t: score(results[t][1])) if results else None
        chosen[row] = results[best][0] if best else None
        for t, (_, summary) in results.items():
            lines.append(f"| {row} | {t} | {fmt(summary.get('success_rate'))} | {fmt(summary.get('rho_median'))} | "
                         f"{'**yes**' if t == best else ''} |")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    lines += ["", f"Wall time: {minutes(time.time() - start)}; failed points: "
              f"{', '.join(j.name for j in failed) or 'none'}."]  # fmt: skip
    text = "\n".join(lines) + "\n"
    (out / "tuning.md").write_text(text)
    print(text)
    for row, p in chosen.items():
        print(f"[tune] {row}: {p}")
    return text
