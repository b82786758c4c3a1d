"""Tune every attack with the same effort, on trials disjoint from the evaluation trials.

    coadv tune-attacks --victim ge2e --budget 30 --trials 12 --offset 1000 -- --data.init_args.eval_max_seconds=3

Each attack gets a small grid over its one or two main knobs (``GRID``: CW's lr and c, PGD-L2's step, DDN's
initial ε and step α, FMN's α, Gauss-Newton's overshoot, quasi-Newton's c, SSR's η and initial radius), every point
run at one equal budget B (``coadv.compare.budgets``) on the tuning split: ``--trials`` trials starting at list
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

from callbacks.markdown import table_lines
from coadv.compare import budgets
from coadv.compare.jobs import Job, run_jobs
from coadv.compare.tables import fmt
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


# `--domain feature`: the same effort on the i-vector victim's MFCC frames; absolute knobs in feature units
FEATURE_GRID: dict[str, dict[str, list]] = {
    "mfcc_ivec": {"epsilon": [0.1, 0.3, 1.0]},
    "bim+bs": {"epsilon": [0.25, 0.5, 1.0]},
    "pgd_l2": {"step_size": [0.5, 2.0, 8.0]},
    "ddn": GRID["ddn"],
    "fmn": GRID["fmn"],
    "gauss_newton+min": GRID["gauss_newton+min"],
    "qn_lbfgs": {"c": [1.0, 10.0, 100.0, 1000.0]},
    "ssr": {"eta": [0.0001, 0.001], "rho0": [0.3, 1.0, 3.0]},  # feature units (jsonargparse refuses a null rho0 here)
}


def points(row: str, grid: dict[str, dict[str, list]] = GRID) -> list[dict]:
    """Every combination of ``row``'s grid."""
    grid = grid[row]
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def tag(point: dict) -> str:
    return "_".join(f"{k}={'null' if v is None else v}" for k, v in point.items())


def point_flags(point: dict, row: str = "", feature: bool = False) -> list[str]:
    """The point's values on the tuned attack: inside a boundary search ("+bs") and / or ``attacks.FeatureDomain``
    (``feature``, except MFCC-ivec, which works on the features itself), one level deeper each."""
    depth = row.endswith("+bs") + (feature and not row.startswith("mfcc_ivec"))
    return [f"{PREFIX}{budgets.INNER * depth}{k}={'null' if v is None else v}" for k, v in point.items()]


def score(summary: dict) -> tuple[float, float]:
    """Sort key: lower-median ρ over every attacked trial (failure = ∞), then the success rate (higher first)."""
    rho = summary.get("rho_median")
    return (math.inf if rho is None or math.isnan(rho) else rho, -float(summary.get("success_rate") or 0.0))


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="coadv tune-attacks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--victim", required=True, choices=VICTIMS)
    parser.add_argument(
        "--attacks",
        nargs="+",
        default=None,
        choices=sorted({*GRID, *FEATURE_GRID}),
        help="rows to tune (default: every row of the domain's grid)",
    )
    parser.add_argument(
        "--domain",
        choices=("waveform", "feature"),
        default="waveform",
        help="feature: tune the searches on the i-vector victim's MFCC frames (FEATURE_GRID)",
    )
    parser.add_argument("--budget", type=int, default=30, help="gradient evaluations per trial (30)")
    parser.add_argument("--trials", type=int, default=12, help="trials of the tuning split (12)")
    parser.add_argument("--offset", type=int, default=1000, help="list position of the tuning split (1000)")
    parser.add_argument("--out", type=Path, default=None, help="default runs/tune/<victim>")
    parser.add_argument("--in-process", action="store_true", help="run every point in this process")
    parser.add_argument("extra", nargs="*", help="flags passed to every coadv test run (after --)")
    ns = parser.parse_args(argv)
    if ns.budget < 1 or ns.trials < 1 or ns.offset < 0:
        raise SystemExit("--budget and --trials must be >= 1, --offset >= 0")
    ns.grid = FEATURE_GRID if ns.domain == "feature" else GRID
    ns.attacks = ns.attacks or list(ns.grid)
    unknown = [a for a in ns.attacks if a not in ns.grid]
    if unknown:
        raise SystemExit(f"no {ns.domain}-domain grid for {', '.join(unknown)}; valid: {', '.join(ns.grid)}")
    if ns.domain == "feature" and ns.victim != "ivector":
        raise SystemExit(f"--domain feature needs a victim with an MFCC front-end (ivector), got {ns.victim}")
    return ns


def main(argv: list[str] | None = None) -> str:
    ns = parse(argv)
    start = time.time()
    feature = ns.domain == "feature"
    out = ns.out or Path("runs") / "tune" / (ns.victim + ("_feature" if feature else ""))
    extra = [f"--data.init_args.trial_offset={ns.offset}", *ns.extra]
    jobs = {
        (row, tag(p)): Job(
            ns.victim,
            budgets.variant(row),
            str(ns.budget),
            out / row / tag(p),
            ns.trials,
            [*point_flags(p, row, feature), *extra],
            feature,
        )
        for row in ns.attacks
        for p in points(row, ns.grid)
    }
    _, failed = run_jobs(list(jobs.values()), force=False, keep_going=True, in_process=ns.in_process)
    command = " ".join(
        [
            "coadv tune-attacks --victim",
            ns.victim,
            *(["--domain", "feature"] if feature else []),
            "--budget",
            str(ns.budget),
            "--trials",
            str(ns.trials),
            "--offset",
            str(ns.offset),
            *(["--", *ns.extra] if ns.extra else []),
        ]
    )
    lines = [
        "# Attack tuning",
        "",
        f"`{command}`",
        "",
        f"Tuning split: trials {ns.offset}-{ns.offset + ns.trials - 1} of the list, B = {ns.budget}; chosen: "
        "smallest lower-median ρ over every attacked trial (failure = ∞), then highest success.",
        "",
    ]
    chosen = {}
    rows = []
    for row in ns.attacks:
        results = {}
        for p in points(row, ns.grid):
            job = jobs[(row, tag(p))]
            if job in failed or not job.summary_path.is_file():
                continue
            results[tag(p)] = (p, json.loads(job.summary_path.read_text()))
        best = min(results, key=lambda t: score(results[t][1])) if results else None
        chosen[row] = results[best][0] if best else None
        for t, (_, summary) in results.items():
            rows.append(
                [
                    row,
                    t,
                    fmt(summary.get("success_rate")),
                    fmt(summary.get("rho_median")),
                    "**yes**" if t == best else "",
                ]
            )
    lines += table_lines(["attack", "point", "success", "median ρ (failure = ∞)", "chosen"], rows)
    out.mkdir(parents=True, exist_ok=True)
    lines += [
        "",
        f"Wall time: {minutes(time.time() - start)}; failed points: {', '.join(j.name for j in failed) or 'none'}.",
    ]
    text = "\n".join(lines) + "\n"
    (out / "tuning.md").write_text(text)
    print(text)
    for row, p in chosen.items():
        print(f"[tune] {row}: {p}")
    return text
