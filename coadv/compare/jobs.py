"""One ``coadv test`` run of an attack comparison (``Job``), the record that lets a finished run be reused (the
arguments, the config text, and hashes of the attack code and of the victim checkpoint), and running a list."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from coadv.compare import budgets, configs
from coadv.compare.tables import DEFAULT, Run
from coadv.progress import meter, minutes
from coadv.sources import ATTACK_CODE, ROOT, code_of, source_bytes, source_files

# each run keeps Lightning's test progress bar (trial batches, with ETA); the model summary would only repeat itself
CHILD_FLAGS = ["--trainer.enable_model_summary=false"]


def read_trials_csv(path: Path) -> dict[str, np.ndarray]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]} if rows else {}


class Job:
    """One ``coadv test`` run of a comparison: its folder, arguments, and the record that lets it be reused.

    Args:
        victim: victim name (``configs/attack/victim/<victim>.yaml``).
        row: the comparison row (attack, "+bs" / "+min" variant).
        setting: ``"default"`` (the config's settings) or a budget B as text.
        out: the victim's comparison folder; the run goes to ``out/<row>`` or ``out/budget_<B>/<row>``.
        trials: first N trials of the list, None for all.
        extra: flags appended to the run's command line.
        feature: run the attack in the victim's feature domain (``attacks.FeatureDomain``).
    """

    def __init__(
        self,
        victim: str,
        row: budgets.Variant,
        setting: str,
        out: Path,
        trials: int | None,
        extra: list[str],
        feature: bool = False,
    ) -> None:
        self.victim = victim
        self.row = row
        self.setting = setting
        self.configs = configs.config_files(row.base, victim)
        self.folder = out / row.name if setting == DEFAULT else out / f"budget_{setting}" / row.name
        self.budget = None if setting == DEFAULT else int(setting)
        self.fragment = budgets.wrapped_fragment(row.base, victim, row.boundary_search, feature)
        wrapper = ["-c", str(self.folder / "wrapper.yaml")] * bool(self.fragment)
        self.args = [
            "test",
            *configs.args(row.base, victim),
            *wrapper,
            f"--trainer.default_root_dir={self.folder}",
            *CHILD_FLAGS,
            *budgets.budget_flags(row, self.budget, feature),
            *extra,
        ]
        if trials is not None:
            self.args.append(f"--data.init_args.max_trials={trials}")
        self.summary_path = self.folder / "attack" / "summary.json"
        self.record_path = self.folder / "compare_args.json"
        self.at_start = False  # set by run_jobs for in-process runs

    @property
    def record(self) -> dict:
        """What a finished run must match to be reused: arguments, the composed configs' text, fragment, and hashes
        of the attack code and of the victim checkpoint (a code change or a retrained victim reruns it)."""
        config = configs.text(self.row.base, self.victim)
        return {
            "args": self.args,
            "config": config,
            "fragment": self.fragment,
            "code": code_hash(config + (self.fragment or ""), self.at_start),
            "victim": file_hash(self.victim_checkpoint()),
        }

    def victim_checkpoint(self) -> Path:
        """The victim file the run reads: the last ``--model.init_args.checkpoint=`` flag, else the configs'."""
        flags = [a.split("=", 1)[1] for a in self.args if a.startswith("--model.init_args.checkpoint=")]
        if flags:
            return Path(flags[-1])
        return Path(configs.merged(self.row.base, self.victim)["model"]["init_args"]["checkpoint"])

    @property
    def name(self) -> str:
        return f"{self.victim} {self.row.name}" + ("" if self.setting == DEFAULT else f" B={self.setting}")

    def done(self) -> bool:
        """A finished run made with the same arguments, config text (comment lines aside) and fragment exists."""
        if not (self.summary_path.is_file() and self.record_path.is_file()):
            return False
        return uncommented(json.loads(self.record_path.read_text())) == uncommented(self.record)

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
        minimises, stop = budgets.stopping_rule(self.victim, self.row, self.budget)
        summary = json.loads(self.summary_path.read_text())
        trials = read_trials_csv(self.folder / "attack" / "trials.csv")
        return Run(self.victim, self.row, self.setting, summary, trials, minimises, stop, self.folder)


def attack_sources(config_text: str, at_start: bool = False) -> list[str]:
    """The ``attacks/`` modules a run's attack is made of: the modules of every ``attacks.<Class>`` its config
    text names (wrappers and the attack they wrap), and the ``attacks`` modules those import, recursively."""
    import attacks

    named = [getattr(attacks, name, None) for name in re.findall(r"\battacks\.(\w+)", config_text)]
    todo = {cls.__module__ for cls in named if isinstance(cls, type)}
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
    for file in source_files([*ATTACK_CODE, *attack_sources(config_text, at_start)]):
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
    start = time.time()
    failed = []
    for i, job in enumerate(todo):
        print(meter(i, len(todo), time.time() - start, "run", f"[compare] runs (next: {job.name})"), flush=True)
        try:
            job.run(in_process)
        except subprocess.CalledProcessError as error:
            if not keep_going:
                raise SystemExit(
                    f"[compare] {job.name} failed (exit {error.returncode}); rerun to continue, "
                    "finished runs are reused (--keep-going skips failed runs)"
                ) from error
            print(f"[compare] {job.name}: FAILED (exit {error.returncode}), left out of the tables", flush=True)
            failed.append(job)
    return len(jobs) - len(todo), failed


def uncommented(record: dict) -> dict:
    """A reuse record with the configs' whole-line comments and blank lines dropped: a comment edit keeps a finished
    run reusable (values, code and victim still decide)."""
    lines = str(record.get("config", "")).splitlines()
    return {**record, "config": "\n".join(x for x in lines if x.strip() and not x.lstrip().startswith("#"))}
