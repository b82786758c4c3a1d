"""Every attack against one victim, side by side: one ``coadv test`` run per ``configs/attack/<attack>_<victim>.yaml``.

    coadv compare-attacks --victim ecapa                     # all trials of the list, every attack
    coadv compare-attacks --victim ivector --trials 40 --attacks fgsm bim qn_lbfgs ssr
    coadv compare-attacks --victim ecapa -- --trainer.devices=2 --trainer.strategy=ddp   # flags for every run

Prints (and writes to ``<out>/comparison.md`` / ``.csv``) per attack: success rate over the trials decided
correctly when clean, mean / median ρ and mean SNR over successes, gradient evaluations and wall time per trial,
FAR / FRR / EER of the attacked trials at the clean threshold; then a paired table against ``--reference``
(default the L-BFGS quasi-Newton search): on the trials both succeed on, the mean ρ of each. ``<out>/rho.png``
shows the ρ distributions. Each attack's run lives in ``<out>/<attack>/`` (audio, per-trial CSV, plots); a finished
run made with the same flags and config text is reused, so an interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from callbacks.attack_report import markdown_table, rho_figure
from coadv.constants import ATTACKS, CONFIGS, VICTIMS
from coadv.progress import meter, minutes, summary

# each run keeps Lightning's test progress bar (trial batches, with ETA); the model summary would only repeat itself
CHILD_FLAGS = ["--trainer.enable_model_summary=false"]


def read_trials_csv(path: Path) -> dict[str, np.ndarray]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]} if rows else {}


def run_attack(
    attack: str, victim: str, out: Path, trials: int | None, extra: list[str], force: bool
) -> tuple[dict, bool]:
    """One attack's summary, and whether it was reused (a stored run made with the same flags and config)."""
    config = CONFIGS / "attack" / f"{attack}_{victim}.yaml"
    summary_path = out / attack / "attack" / "summary.json"
    args_path = out / attack / "compare_args.json"  # what the stored run was asked; reused only for the same
    args = ["test", "-c", str(config), f"--trainer.default_root_dir={out / attack}", *CHILD_FLAGS, *extra]
    if trials is not None:
        args.append(f"--data.init_args.max_trials={trials}")
    stored = {"args": args, "config": config.read_text()}
    if summary_path.is_file() and args_path.is_file() and not force:
        if json.loads(args_path.read_text()) == stored:
            print(f"[compare] {attack}: reusing {summary_path}", flush=True)
            return json.loads(summary_path.read_text()), True
    print(f"[compare] {attack}: coadv {' '.join(args)}", flush=True)
    args_path.unlink(missing_ok=True)
    start = time.time()
    subprocess.run([sys.executable, "-m", "coadv", *args], check=True)
    args_path.write_text(json.dumps(stored, indent=1) + "\n")
    print(f"[compare] {attack}: {minutes(time.time() - start)}", flush=True)
    return json.loads(summary_path.read_text()), False


def run_attacks(
    attacks: list[str], victim: str, out: Path, trials: int | None, extra: list[str], force: bool
) -> tuple[dict, int]:
    """Every attack's summary, in order, and how many were reused. Before each attack a line with the comparison's
    progress and ETA (reused attacks do not count in the rate): the run itself shows Lightning's bar over its trial
    batches, which a live bar here would garble."""
    summaries, start, reused = {}, time.time(), 0
    for i, attack in enumerate(attacks):
        print(
            meter(i, len(attacks), time.time() - start, "attack", f"[compare] attacks (next: {attack})", reused),
            flush=True,
        )
        summaries[attack], was_reused = run_attack(attack, victim, out, trials, extra, force)
        reused += was_reused
    return summaries, reused


def wandb_note(out: Path, attacks: list[str]) -> str:
    """Where the attacks' W&B runs are (one per attack run), with the upload command for offline ones."""
    runs = [run for a in attacks for run in sorted((out / a / "wandb").glob("*run-*"))[-1:]]
    offline = [run for run in runs if run.name.startswith("offline-run-")]
    if not runs:
        return "no W&B runs (disabled, or another logger)"
    note = f"{len(runs)} runs under {out}/<attack>/wandb/"
    return note + (f" ({len(offline)} offline; upload: wandb sync {out}/*/wandb/offline-run-*)" if offline else "")


def tables(summaries: dict[str, dict], per_trial: dict[str, dict], reference: str) -> tuple[str, list, list]:
    header = ["attack", "success", "ρ mean", "ρ median", "SNR dB", "‖δ‖∞", "grad evals", "wall s", "FAR", "FRR"]
    # FAR / FRR after the attack; no EER: an attack that pushes both classes across makes it ≈ 1
    keys = ["success_rate", "rho_mean", "rho_median", "snr_db_mean", "linf_mean", "grad_evals_mean", "wall_s_mean",
            "far", "frr"]  # fmt: skip
    # feature-domain attacks measure rho in MFCC units: labelled, and left out of the paired table
    label = {name: name if s.get("domain", "waveform") == "waveform" else f"{name} [{s['domain']}]"
             for name, s in summaries.items()}  # fmt: skip
    rows = [[label[name]] + [float(s[k]) for k in keys] for name, s in summaries.items()]
    text = markdown_table(header, rows)
    if reference in per_trial:
        ref = per_trial[reference]
        ref_won = (ref["success"] > 0) & (ref["clean_correct"] > 0)
        paired_header = ["attack", "both succeed", f"ρ {reference}", "ρ attack", "ratio"]
        paired = []
        for name, t in per_trial.items():
            if name == reference or label[name] != name or len(t.get("rho", [])) != len(ref["rho"]):
                continue
            both = ref_won & (t["success"] > 0)
            if both.any():
                a, b = float(ref["rho"][both].mean()), float(t["rho"][both].mean())
                paired.append([name, int(both.sum()), a, b, b / a])
        text += f"\nPaired with {reference} (trials both succeed on; mean ρ):\n\n" + markdown_table(
            paired_header, paired
        )
    return text, header, rows


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        prog="coadv compare-attacks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--victim", required=True, choices=VICTIMS)
    parser.add_argument("--attacks", nargs="+", default=None, help=f"subset of {', '.join(ATTACKS)}")
    parser.add_argument("--trials", type=int, default=None, help="first N trials of the list (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="default runs/attack/<victim>")
    parser.add_argument("--reference", default="qn_lbfgs")
    parser.add_argument("--force", action="store_true", help="re-run attacks whose results exist")
    parser.add_argument("extra", nargs="*", help="flags passed to every coadv test run (after --)")
    ns = parser.parse_args(argv)
    attacks = ns.attacks or [a for a in ATTACKS if (CONFIGS / "attack" / f"{a}_{ns.victim}.yaml").is_file()]
    missing = [a for a in attacks if not (CONFIGS / "attack" / f"{a}_{ns.victim}.yaml").is_file()]
    if missing:
        raise SystemExit(f"no config configs/attack/<attack>_{ns.victim}.yaml for {', '.join(missing)}")
    out = ns.out or Path("runs") / "attack" / ns.victim
    start = time.time()
    summaries, reused = run_attacks(attacks, ns.victim, out, ns.trials, ns.extra, ns.force)
    per_trial = {a: read_trials_csv(out / a / "attack" / "trials.csv") for a in attacks}
    text, header, rows = tables(summaries, per_trial, ns.reference)
    n = int(next(iter(summaries.values()))["trials"])
    title = (
        f"Attacks against {ns.victim} ({n} trials, clean threshold {next(iter(summaries.values()))['threshold']:.4f})"
    )
    text = f"## {title}\n\n{text}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.md").write_text(text)
    with open(out / "comparison.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    rho = {a: t["rho"][(t["success"] > 0) & (t["clean_correct"] > 0)] for a, t in per_trial.items() if t}
    (out / "rho.png").write_bytes(rho_figure(rho, title))
    print(text, flush=True)
    ran = len(attacks) - reused
    print(summary(f"coadv compare-attacks --victim {ns.victim}", [
        ("attacks", f"{len(attacks)} ({ran} run now, {reused} reused) in {minutes(time.time() - start)}"),
        ("table", f"{out / 'comparison.md'}, {out / 'comparison.csv'}"),
        ("plot", out / "rho.png"),
        ("runs", f"{out}/<attack>/attack/ (adversarial audio, trials.csv, summary.json, examples/)"),
        ("W&B", wandb_note(out, attacks)),
    ]), flush=True)  # fmt: skip
    return text
