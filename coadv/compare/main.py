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

Each row is one ``coadv test -c configs/attack/<attack>_<victim>.yaml`` run per setting; "+bs" rows wrap the
attack in a boundary search (bisection of its perturbation's scale), "+min" rows turn its early stop off
(how each budget is set: ``coadv.attack_budgets``). Per victim it prints and writes to ``<out>/comparison.md``:
(i) the default-settings table (success, ρ median / mean, SNR, PESQ / STOI when computed, gradient evaluations,
wall time, FAR on non-target and FRR on target trials clean → after, stopping rule); (ii) the equal-budget table
(``success / median ρ`` per budget); a table paired with ``--reference``; (iv) the claims' paired statistics
(per-trial ratios over every attacked trial with sign-test intervals, ``coadv.attack_stats``), also in ``<out>/claims.md`` with their
verdicts; ``<out>/comparison.csv`` (every run), ``<out>/rho_budget.png`` (iii, ρ and success against the budget),
``<out>/rho.png`` (ρ distributions at default settings). Runs live in ``<out>/<attack>/`` (default settings) and
``<out>/budget_<B>/<attack>/``; a finished run made with the same flags and config text is reused, so an
interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from callbacks.attack_report import rho_figure
from coadv import attack_budgets as budgets
from coadv.attack_claims import claims_markdown, comparison_table, comparisons
from coadv.attack_stats import RESAMPLES, correct
from coadv.attack_tables import DEFAULT, Run, budget_table, csv_rows, curves_png, default_table, reference_table
from coadv.constants import VICTIMS
from coadv.progress import meter, minutes, summary
from coadv.sources import ATTACK_CODE, ROOT, code_of, files, source_bytes

# each run keeps Lightning's test progress bar (trial batches, with ETA); the model summary would only repeat itself
CHILD_FLAGS = ["--trainer.enable_model_summary=false"]


def read_trials_csv(path: Path) -> dict[str, np.ndarray]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]} if rows else {}


class Job:
    """One ``coadv test`` run of a comparison: its folder, arguments, and the record that lets it be reused.

    Args:
        victim: victim name (``configs/attack/<attack>_<victim>.yaml``).
        row: the comparison row (attack, "+bs" / "+min" variant).
        setting: ``"default"`` (the config's settings) or a budget B as text.
        out: the victim's comparison folder; the run goes to ``out/<row>`` or ``out/budget_<B>/<row>``.
        trials: first N trials of the list, None for all.
        extra: flags appended to the run's command line.
    """

    def __init__(self, victim: str, row: budgets.Variant, setting: str, out: Path, trials: int | None,
                 extra: list[str], feature: bool = False) -> None:  # fmt: skip
        self.victim, self.row, self.setting = victim, row, setting
        self.config = budgets.config_of(row.base, victim)
        self.folder = out / row.name if setting == DEFAULT else out / f"budget_{setting}" / row.name
        self.budget = None if setting == DEFAULT else int(setting)
        self.fragment = budgets.wrapped_fragment(self.config, row.boundary_search, feature)
        configs = ["-c", str(self.config)] + (["-c", str(self.folder / "wrapper.yaml")] * bool(self.fragment))
        self.args = ["test", *configs, f"--trainer.default_root_dir={self.folder}", *CHILD_FLAGS,
                     *budgets.flags(row, self.budget, feature), *extra]  # fmt: skip
        if trials is not None:
            self.args.append(f"--data.init_args.max_trials={trials}")
        self.summary_path, self.record_path = self.folder / "attack" / "summary.json", self.folder / "compare_args.json"
        self.at_start = False  # set by run_jobs for in-process runs

    @property
    def record(self) -> dict:
        """What a finished run must match to be reused: arguments, config text, fragment, and hashes of the attack
        code and of the victim checkpoint (a code change or a retrained victim reruns it)."""
        return {"args": self.args, "config": self.config.read_text(), "fragment": self.fragment,
                "code": code_hash(self.config.read_text() + (self.fragment or ""), self.at_start),
                "victim": file_hash(self.victim_checkpoint())}  # fmt: skip

    def victim_checkpoint(self) -> Path:
        """The victim file the run reads: the last ``--model.init_args.checkpoint=`` flag, else the config's."""
        flags = [a.split("=", 1)[1] for a in self.args if a.startswith("--model.init_args.checkpoint=")]
        if flags:
            return Path(flags[-1])
        return Path(yaml.safe_load(self.config.read_text())["model"]["init_args"]["checkpoint"])

    @property
    def name(self) -> str:
        return f"{self.victim} {self.row.name}" + ("" if self.setting == DEFAULT else f" B={self.setting}")

    def done(self) -> bool:
        """A finished run made with the same arguments, config text and fragment exists."""
        if not (self.summary_path.is_file() and self.record_path.is_file()):
            return False
        return json.loads(self.record_path.read_text()) == self.record

    def run(self, in_process: bool = False) -> None:
        """Run ``coadv test``: in a child process, or with ``in_process`` in this one (no start-up per run:
        ``import lightning`` alone takes seconds; trial seeds make the results the same either way)."""
        print(f"[compare] {self.name}: coadv {' '.join(self.args)}", flush=True)
        self.record_path.unlink(missing_ok=True)
        record = self.record  # the sources as they are when the run starts: an edit during it reruns it later
        if self.fragment:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / "wrapper.yaml").write_text(self.fragment)
        start = time.time()
        if in_process:
            from coadv.cli import cli_main

            try:
                cli_main(list(self.args))
            except (Exception, SystemExit) as error:  # noqa: BLE001  (reported like a failed child process)
                print(f"[compare] {self.name}: {type(error).__name__}: {error}", flush=True)
                raise subprocess.CalledProcessError(getattr(error, "code", None) or 1, self.args) from error
        else:
            subprocess.run([sys.executable, "-m", "coadv", *self.args], check=True)
        self.record_path.write_text(json.dumps(record, indent=1) + "\n")
        print(f"[compare] {self.name}: {minutes(time.time() - start)}", flush=True)

    def result(self) -> Run:
        minimises, stop = budgets.stopping_rule(self.config, self.row, self.budget)
        return Run(self.victim, self.row, self.setting, json.loads(self.summary_path.read_text()),
                   read_trials_csv(self.folder / "attack" / "trials.csv"), minimises, stop, self.folder)  # fmt: skip


def attack_sources(config_text: str, at_start: bool = False) -> list[str]:
    """The ``attacks/`` modules a run's attack is made of: the modules of every ``attacks.<Class>`` its config
    text names (wrappers and the attack they wrap), and the ``attacks`` modules those import, recursively."""
    import attacks

    todo = {getattr(attacks, name).__module__ for name in re.findall(r"\battacks\.(\w+)", config_text)
            if isinstance(getattr(attacks, name, None), type)}  # fmt: skip
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        seen.add(module)
        text = source_bytes(ROOT / (module.replace(".", "/") + ".py"), at_start).decode()
        todo |= {f"attacks.{m}" for m in re.findall(r"^from attacks\.(\w+) import", text, re.M)} - seen
    return sorted(m.replace(".", "/") + ".py" for m in seen)


def code_hash(config_text: str = "", at_start: bool = False) -> str:
    """SHA-256 over the sources that decide an attack run's numbers: the shared attack machinery, the attack
    module, the victims and the speech data (``ATTACK_CODE``), and the modules of the attack the config names
    (``attack_sources``): a change to one attack reruns that attack only. ``at_start``: the sources as this process
    first read them (``coadv.sources``: what an in-process run executes)."""
    digest = hashlib.sha256()
    for file in files([*ATTACK_CODE, *attack_sources(config_text, at_start)]):
        digest.update(file.relative_to(ROOT).as_posix().encode() + b"\0" + code_of(source_bytes(file, at_start)))
    return digest.hexdigest()


def file_hash(path: Path) -> str:
    """SHA-256 of a file's bytes ("missing" when absent)."""
    if not path.is_file():
        return "missing"
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_jobs(jobs: list[Job], force: bool, keep_going: bool = False, in_process: bool = False) -> tuple[int, list[Job]]:
    """Run what is not done (all with ``force``); before each, a line with the progress and ETA over the runs
    still to do (reused runs are announced and do not count). A failed run stops the comparison, or with
    ``keep_going`` is listed and skipped. Returns how many were reused, and the failed jobs."""
    for job in jobs:
        job.at_start = in_process  # in-process runs execute the sources imported at start: hash those
    todo = [j for j in jobs if force or not j.done()]
    for job in jobs:
        if job not in todo:
            print(f"[compare] {job.name}: reusing {job.summary_path}", flush=True)
    start, failed = time.time(), []
    for i, job in enumerate(todo):
        print(meter(i, len(todo), time.time() - start, "run", f"[compare] runs (next: {job.name})"), flush=True)
        try:
            job.run(in_process)
        except subprocess.CalledProcessError as error:
            if not keep_going:
                raise SystemExit(f"[compare] {job.name} failed (exit {error.returncode}); rerun to continue, "
                                 "finished runs are reused (--keep-going skips failed runs)") from error  # fmt: skip
            print(f"[compare] {job.name}: FAILED (exit {error.returncode}), left out of the tables", flush=True)
            failed.append(job)
    return len(jobs) - len(todo), failed


def settings_of(values: list[str] | None) -> list[str]:
    """``--budgets`` -> settings: ``default`` and/or budgets (positive integers), in order, once each."""
    if not values:
        return [DEFAULT]
    bad = [v for v in values if v != DEFAULT and not (v.isdigit() and int(v) >= 1)]
    if bad:
        raise SystemExit(f"--budgets: {', '.join(map(repr, bad))} not 'default' or a positive integer")
    return list(dict.fromkeys(v if v == DEFAULT else str(int(v)) for v in values))


def plan(victim: str, names: list[str] | None, settings: list[str], out: Path, trials, extra,
         feature: bool = False) -> list[Job]:  # fmt: skip
    """The runs of one victim: every row at every setting; fixed-cost rows (FGSM, MFCC-ivec) once. Rows without a
    config for this victim (MFCC-ivec beside a neural victim) are left out; ``check_rows`` refuses names that no
    victim has. ``feature``: the rows of ``budgets.FEATURE_ROWS``, each run in the victim's feature domain."""
    rows = [budgets.variant(n) for n in (names or budgets.variant_names())]
    rows = [r for r in rows if budgets.config_of(r.base, victim).is_file()]
    if feature:
        rows = [r for r in rows if r.base in budgets.FEATURE_ROWS]
    return [Job(victim, row, setting, out, trials, extra, feature) for row in rows
            for setting in ([DEFAULT] if row.fixed_cost else settings)]  # fmt: skip


def check_rows(names: list[str] | None, victims: list[str]) -> None:
    """Every named row exists (``variant`` exits otherwise) and has a config for at least one of ``victims``."""
    for base in sorted({budgets.variant(n).base for n in names or []}):
        if not any(budgets.config_of(base, v).is_file() for v in victims):
            raise SystemExit(f"no config configs/attack/{base}_<victim>.yaml for {', '.join(victims)}")


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
            parts += [f"Paired with {ns.reference} (default settings; every attacked trial, failure = ∞; 95 % sign-test CI):\n",
                      paired_ref]  # fmt: skip
    if any(r.setting != DEFAULT for r in runs):
        parts += ["### Equal budgets: success / median ρ (B gradient evaluations per trial; '+bs': plus "
                  f"{budgets.BOUNDARY_STEPS} forward evaluations)\n", budget_table(runs)]  # fmt: skip
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
    rho = {r.label: r.trials["rho"][(r.trials["success"] > 0) & (r.trials["clean_correct"] > 0)]
           for r in default if r.trials}  # fmt: skip
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
    parser.add_argument("--checkpoint", default=None,
                        help="victim checkpoint path with {victim} in it (default: each config's own)")  # fmt: skip
    parser.add_argument("--reference", default="qn_lbfgs", help="attack the others are paired with (qn_lbfgs)")
    parser.add_argument("--resamples", type=int, default=RESAMPLES, help=f"bootstrap resamples ({RESAMPLES})")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")
    parser.add_argument("--force", action="store_true", help="re-run attacks whose results exist")
    parser.add_argument("--keep-going", action="store_true", help="skip failed runs instead of stopping")
    parser.add_argument("--in-process", action="store_true",
                        help="run every attack in this process (saves the start-up of a child process per run)")  # fmt: skip
    parser.add_argument("--domain", choices=("waveform", "feature"), default="waveform",
                        help="feature: every search runs on the i-vector victim's voiced MFCC frames (attacks."
                             "FeatureDomain), where MFCC-ivec works, so ρ is comparable with it")  # fmt: skip
    parser.add_argument("extra", nargs="*", help="flags passed to every coadv test run (after --)")
    ns = parser.parse_args(argv)
    if ns.domain == "feature" and set(ns.victim) - {"ivector"}:
        raise SystemExit(f"--domain feature needs a victim with an MFCC front-end (ivector), got {' '.join(ns.victim)}")
    ns.settings = settings_of(ns.budgets)
    ns.victim = list(dict.fromkeys(ns.victim))
    return ns


def main(argv: list[str] | None = None) -> str:
    ns, start = parse(argv), time.time()
    several = len(ns.victim) > 1
    root = ns.out or Path("runs") / ("attack" if ns.domain == "waveform" else "attack_feature")
    outs = {v: root / v if several or ns.out is None else root for v in ns.victim}
    check_rows(ns.attacks, ns.victim)
    feature = ns.domain == "feature"
    jobs = {v: plan(v, ns.attacks, ns.settings, outs[v], ns.trials, checkpoint_flag(ns.checkpoint, v) + ns.extra,
                    feature) for v in ns.victim}  # fmt: skip
    reused, failed = run_jobs([j for v in ns.victim for j in jobs[v]], ns.force, ns.keep_going, ns.in_process)
    texts, found = [], {}
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
    print(summary(f"coadv compare-attacks --victim {' '.join(ns.victim)}", [
        ("runs", f"{total} ({total - reused} run now, {reused} reused) in {minutes(time.time() - start)}"),
        ("failed", ", ".join(j.name for j in failed) or "none"),
        ("tables", f"comparison.md, comparison.csv in {out_text}"),
        ("claims", claims),
        ("plots", "rho.png (default settings), rho_budget.png (ρ against the budget)"),
        ("folders", "<out>/<attack>/, <out>/budget_<B>/<attack>/ (adversarial audio, trials.csv, summary.json)"),
        ("W&B", wandb_note([j.folder for v in ns.victim for j in jobs[v]])),
    ]), flush=True)  # fmt: skip
    return text
