"""Every attack against a victim, side by side, at default settings and at equal gradient budgets; the claims.

    coadv compare-attacks --victim ecapa                                  # every attack at its config's settings
    coadv compare-attacks --victim ecapa --budgets default 10 30 100 300  # + equal budgets B (gradient evals/trial)
    coadv compare-attacks --victim ivector --trials 40 --attacks fgsm fgsm+bs ssr qn_lbfgs --budgets 10 100
    coadv compare-attacks --victim ivector seresnet34 ecapa --budgets default 10 30 100 300   # + overall claims.md
    coadv compare-attacks --victim ecapa -- --trainer.devices=2 --trainer.strategy=ddp        # flags for every run
    coadv compare-attacks --victim ivector --domain feature --budgets default 10 30 100  # searches on the MFCC
                                                 # frames, where MFCC-ivec works: ρ comparable with it
    coadv compare-attacks --victim ivector ecapa --checkpoint 'checkpoints/victims/{victim}_libri.ckpt' --out
        runs/attack_libri -- --data=datamodules.LibriSpeechDataModule --data.init_args.root=null
        --data.init_args.synthesize=false          # (one line) the LibriSpeech victims on the embedded trials

Each row is one ``coadv test`` run per setting of the composed configs (``coadv.compare.configs``: base, attack,
victim, tuned values); "+bs" rows wrap the attack in a boundary search (bisection of its perturbation's scale),
"+min" rows turn its early stop off (how each budget is set: ``coadv.compare.budgets``). Per victim it prints and writes to ``<out>/comparison.md``:
(i) the default-settings table (success, ρ median / mean, SNR, PESQ / STOI when computed, gradient evaluations,
wall time, FAR on non-target and FRR on target trials clean → after, stopping rule); (ii) the equal-budget table
(``success / median ρ`` per budget); a table paired with ``--reference``; (iv) the claims' paired statistics
(per-trial ratios over every attacked trial with sign-test intervals, ``coadv.compare.stats``), also in ``<out>/claims.md`` with their
verdicts; ``<out>/comparison.csv`` (every run), ``<out>/rho_budget.png`` (iii, ρ and success against the budget),
``<out>/rho.png`` (ρ distributions at default settings). Runs live in ``<out>/<attack>/`` (default settings) and
``<out>/budget_<B>/<attack>/``; a finished run made with the same flags and config text is reused, so an
interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from callbacks.attack_report import rho_figure
from coadv.compare import budgets, configs
from coadv.compare.claims import claims_markdown, comparison_table, comparisons
from coadv.compare.jobs import Job, run_jobs
from coadv.compare.stats import RESAMPLES, correct
from coadv.compare.tables import DEFAULT, Run, budget_table, csv_rows, curves_png, default_table, reference_table
from coadv.constants import VICTIMS
from coadv.progress import minutes, summary


def settings_of(values: list[str] | None) -> list[str]:
    """``--budgets`` -> settings: ``default`` and/or budgets (positive integers), in order, once each."""
    if not values:
        return [DEFAULT]
    bad = [v for v in values if v != DEFAULT and not (v.isdigit() and int(v) >= 1)]
    if bad:
        raise SystemExit(f"--budgets: {', '.join(map(repr, bad))} not 'default' or a positive integer")
    return list(dict.fromkeys(v if v == DEFAULT else str(int(v)) for v in values))


def plan(
    victim: str, names: list[str] | None, settings: list[str], out: Path, trials, extra, feature: bool = False
) -> list[Job]:
    """The runs of one victim: every row at every setting; fixed-cost rows (FGSM, MFCC-ivec) once. Rows without a
    config for this victim (MFCC-ivec beside a neural victim) are left out; ``check_rows`` refuses names that no
    victim has. ``feature``: the rows of ``budgets.FEATURE_ROWS``, each run in the victim's feature domain."""
    rows = [budgets.variant(n) for n in (names or budgets.variant_names())]
    rows = [r for r in rows if configs.exists(r.base, victim)]
    if feature:
        rows = [r for r in rows if r.base in budgets.FEATURE_ROWS]
    return [
        Job(victim, row, setting, out, trials, extra, feature)
        for row in rows
        for setting in ([DEFAULT] if row.fixed_cost else settings)
    ]


def check_rows(names: list[str] | None, victims: list[str]) -> None:
    """Every named row exists (``variant`` exits otherwise) and has a config for at least one of ``victims``."""
    for base in sorted({budgets.variant(n).base for n in names or []}):
        if not any(configs.exists(base, v) for v in victims):
            raise SystemExit(f"no attack config for {base} against {', '.join(victims)}")


def victim_report(victim: str, runs: list[Run], ns: argparse.Namespace, out: Path) -> tuple[str, dict]:
    """Print and write one victim's tables, curves and claims; returns the text and the claim comparisons."""
    default = [r for r in runs if r.setting == DEFAULT]
    first = runs[0].summary
    title = f"Attacks against {victim} ({int(first['trials'])} trials, clean threshold {first['threshold']:.4f})"
    parts = [f"## {title}\n"]
    if default:
        parts += ["### Default settings (each attack's config; budgets differ)\n", default_table(default)]
        domains = {r.summary.get("domain", "waveform") for r in default}
        if "mfcc" in domains and len(domains) > 1:
            parts.append("[mfcc]: ρ and SNR in MFCC feature units, not comparable with the waveform rows.\n")
        elif "mfcc" in domains:
            parts.append(
                "[mfcc]: every row in MFCC feature units (`--domain feature`): ρ = ‖Δfeatures‖ / ‖features‖.\n"
            )
        paired_ref = reference_table(default, ns.reference, ns.resamples, ns.seed)
        if paired_ref:
            parts += [
                f"Paired with {ns.reference} (default settings; every attacked trial, failure = ∞; 95 % sign-test CI):\n",
                paired_ref,
            ]
    if any(r.setting != DEFAULT for r in runs):
        parts += [
            "### Equal budgets: success / median ρ (B gradient evaluations per trial; '+bs': plus "
            f"{budgets.BOUNDARY_STEPS} forward evaluations)\n",
            budget_table(runs),
        ]
        (out / "rho_budget.png").write_bytes(curves_png(runs, f"{victim}: ρ against the budget"))
    found = comparisons(runs, ns.resamples, ns.seed)
    claim_rows = [c for key in found for c in found[key]]
    if claim_rows:
        parts += [
            "### Claims: paired per-trial ratios (every attacked trial, failure = ∞)\n",
            comparison_table(claim_rows),
        ]
    text = "\n".join(parts)
    (out / "comparison.md").write_text(text)
    (out / "claims.md").write_text(claims_markdown(found, command_line(ns, [victim]), ns.resamples, ns.seed))
    with open(out / "comparison.csv", "w", newline="") as f:
        csv.writer(f).writerows(csv_rows(runs))
    rho = {
        r.label: r.trials["rho"][(r.trials["success"] > 0) & (r.trials["clean_correct"] > 0)]
        for r in default
        if r.trials
    }
    if rho:
        (out / "rho.png").write_bytes(rho_figure(rho, title))
    return text, found


def checkpoint_flag(template: str | None, victim: str) -> list[str]:
    """``--checkpoint 'checkpoints/victims/{victim}_libri.ckpt'`` -> that victim's checkpoint flag."""
    if template is None:
        return []
    if "{victim}" not in template:
        raise SystemExit(f"--checkpoint {template!r}: expected a path with '{{victim}}' in it")
    return [f"--model.init_args.checkpoint={template.replace('{victim}', victim)}"]


def wandb_note(folders: list[Path]) -> str:
    """Where the runs' W&B runs are (one per attack run), with the upload command for offline ones."""
    runs = [run for folder in folders for run in sorted((folder / "wandb").glob("*run-*"))[-1:]]
    offline = [run for run in runs if run.name.startswith("offline-run-")]
    if not runs:
        return "no W&B runs (disabled, or another logger)"
    note = f"{len(runs)} runs under <run>/wandb/"
    return note + (f" ({len(offline)} offline; upload: wandb sync <run>/wandb/offline-run-*)" if offline else "")


def command_line(ns: argparse.Namespace, victims: list[str]) -> str:
    words = ["coadv compare-attacks --victim", *victims]
    words += ["--budgets", *ns.settings] if ns.settings != [DEFAULT] else []
    words += ["--attacks", *ns.attacks] if ns.attacks else []
    words += ["--trials", str(ns.trials)] if ns.trials is not None else []
    words += ["--checkpoint", f"'{ns.checkpoint}'"] if ns.checkpoint else []
    words += ["--reference", ns.reference] if ns.reference != "qn_lbfgs" else []
    words += ["--resamples", str(ns.resamples)] if ns.resamples != RESAMPLES else []
    words += ["--seed", str(ns.seed)] if ns.seed else []
    words += ["--domain", ns.domain] if ns.domain != "waveform" else []
    return " ".join(words + (["--", *ns.extra] if ns.extra else []))


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="coadv compare-attacks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--victim", required=True, nargs="+", choices=VICTIMS)
    parser.add_argument("--attacks", nargs="+", default=None, help=f"rows among {', '.join(budgets.variant_names())}")
    parser.add_argument(
        "--budgets", nargs="+", default=None, help="'default' and/or gradient budgets (default: default)"
    )
    parser.add_argument("--trials", type=int, default=None, help="first N trials of the list (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="default runs/attack/<victim> (several: runs/attack)")
    parser.add_argument(
        "--checkpoint", default=None, help="victim checkpoint path with {victim} in it (default: each config's own)"
    )
    parser.add_argument("--reference", default="qn_lbfgs", help="attack the others are paired with (qn_lbfgs)")
    parser.add_argument("--resamples", type=int, default=RESAMPLES, help=f"bootstrap resamples ({RESAMPLES})")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")
    parser.add_argument("--force", action="store_true", help="re-run attacks whose results exist")
    parser.add_argument("--keep-going", action="store_true", help="skip failed runs instead of stopping")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run every attack in this process (saves the start-up of a child process per run)",
    )
    parser.add_argument(
        "--domain",
        choices=("waveform", "feature"),
        default="waveform",
        help="feature: every search runs on the i-vector victim's voiced MFCC frames (attacks."
        "FeatureDomain), where MFCC-ivec works, so ρ is comparable with it",
    )
    parser.add_argument("extra", nargs="*", help="flags passed to every coadv test run (after --)")
    ns = parser.parse_args(argv)
    if ns.domain == "feature" and set(ns.victim) - {"ivector"}:
        raise SystemExit(f"--domain feature needs a victim with an MFCC front-end (ivector), got {' '.join(ns.victim)}")
    ns.settings = settings_of(ns.budgets)
    ns.victim = list(dict.fromkeys(ns.victim))
    return ns


def main(argv: list[str] | None = None) -> str:
    ns = parse(argv)
    start = time.time()
    several = len(ns.victim) > 1
    root = ns.out or Path("runs") / ("attack" if ns.domain == "waveform" else "attack_feature")
    outs = {v: root / v if several or ns.out is None else root for v in ns.victim}
    check_rows(ns.attacks, ns.victim)
    feature = ns.domain == "feature"
    jobs = {
        v: plan(v, ns.attacks, ns.settings, outs[v], ns.trials, checkpoint_flag(ns.checkpoint, v) + ns.extra, feature)
        for v in ns.victim
    }
    reused, failed = run_jobs([j for v in ns.victim for j in jobs[v]], ns.force, ns.keep_going, ns.in_process)
    texts = []
    found = {}
    for victim in ns.victim:
        finished = [j.result() for j in jobs[victim] if j not in failed]
        if not finished:
            continue
        outs[victim].mkdir(parents=True, exist_ok=True)
        text, mine = victim_report(victim, finished, ns, outs[victim])
        texts.append(text)
        for key, rows in mine.items():
            found.setdefault(key, []).extend(rows)
    for rows in found.values():  # one claim table over every victim: Holm across all of its comparisons
        correct(rows)
    claims = outs[ns.victim[0]] / "claims.md"
    if several:
        claims = root / "claims.md"
        claims.write_text(claims_markdown(found, command_line(ns, ns.victim), ns.resamples, ns.seed))
    text = "\n".join(texts)
    print(text, flush=True)
    total = sum(len(j) for j in jobs.values())
    out_text = ", ".join(str(o) for o in outs.values())
    print(
        summary(
            f"coadv compare-attacks --victim {' '.join(ns.victim)}",
            [
                ("runs", f"{total} ({total - reused} run now, {reused} reused) in {minutes(time.time() - start)}"),
                ("failed", ", ".join(j.name for j in failed) or "none"),
                ("tables", f"comparison.md, comparison.csv in {out_text}"),
                ("claims", claims),
                ("plots", "rho.png (default settings), rho_budget.png (ρ against the budget)"),
                (
                    "folders",
                    "<out>/<attack>/, <out>/budget_<B>/<attack>/ (adversarial audio, trials.csv, summary.json)",
                ),
                ("W&B", wandb_note([j.folder for v in ns.victim for j in jobs[v]])),
            ],
        ),
        flush=True,
    )
    return text
