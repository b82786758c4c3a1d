"""Run a W&B sweep file with no W&B server: the same YAML that `wandb sweep` takes, trials suggested by Optuna.

    coadv sweep configs/sweeps/accr_lambdas.yaml --trials 8 [--preset ci] [--out runs/sweep_accr_lambdas]

Why Optuna: it needs no server, has grid and random samplers matching W&B's `grid` / `random`, a model-based
sampler for `bayes` (TPE; W&B's own bayes uses a Gaussian process, so suggestions differ), and an ask-and-tell
API for trials that run as separate processes. Each trial runs the sweep's `command` exactly as `wandb agent`
would (macros ${env}, ${interpreter}, ${program}, ${args}, ${args_no_hyphens}; a bare `python` becomes this
interpreter), plus a trial folder, a CSV logger and the preset's sizing (its `configs` fragments and `flags`); the
metric is read from the CSV.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml
from jsonschema import Draft7Validator
from tqdm import tqdm

from callbacks.markdown import markdown_table
from coadv.constants import CONFIGS, config_path
from coadv.progress import bar, minutes, summary

SCHEMA = CONFIGS / "sweeps" / "schema" / "wandb_sweep_schema.json"


def validate(config: dict, source: str) -> None:
    """Raise ``ValueError`` listing every way ``config`` breaks W&B's sweep schema."""
    errors = sorted(Draft7Validator(json.loads(SCHEMA.read_text())).iter_errors(config), key=str)
    if errors:
        lines = "\n".join(f"  {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors)
        raise ValueError(f"{source} is not a valid W&B sweep configuration:\n{lines}")


def suggest(trial: optuna.Trial, name: str, spec: dict):
    """One value for parameter ``name`` from its W&B spec."""
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        return trial.suggest_categorical(name, spec["values"])
    dist = spec.get("distribution") or (
        "int_uniform" if isinstance(spec["min"], int) and isinstance(spec["max"], int) else "uniform"
    )
    if dist == "int_uniform":
        return trial.suggest_int(name, spec["min"], spec["max"])
    if dist == "uniform":
        return trial.suggest_float(name, spec["min"], spec["max"])
    if dist == "log_uniform_values":
        return trial.suggest_float(name, spec["min"], spec["max"], log=True)
    if dist == "q_uniform":
        return trial.suggest_float(name, spec["min"], spec["max"], step=spec.get("q", 1.0))
    raise ValueError(
        f"parameter {name!r}: distribution {dist!r} is not supported offline (use values, uniform, "
        "int_uniform, log_uniform_values or q_uniform)"
    )


def sampler(config: dict, seed: int) -> optuna.samplers.BaseSampler:
    method = config["method"]
    if method == "grid":
        space = {
            name: spec["values"] if "values" in spec else [spec["value"]] for name, spec in config["parameters"].items()
        }
        return optuna.samplers.GridSampler(space, seed=seed)
    return optuna.samplers.RandomSampler(seed) if method == "random" else optuna.samplers.TPESampler(seed=seed)


def expand(command: list[str], program: str, params: dict) -> list[str]:
    args = [f"--{k}={v}" for k, v in params.items()]
    macros = {
        "${env}": [],
        "${interpreter}": [sys.executable],
        "${program}": [program],
        "${args}": args,
        "${args_no_hyphens}": [f"{k}={v}" for k, v in params.items()],
    }
    out = []
    for token in command:
        out += macros.get(token, [sys.executable] if token == "python" else [token])
    return out


def last_metric(folder: Path, name: str) -> float:
    rows = list(csv.DictReader(open(next(folder.glob("csv/version_*/metrics.csv")))))
    values = [float(r[name]) for r in rows if r.get(name) not in (None, "")]
    if not values:
        raise KeyError(f"metric {name!r} was never logged in {folder}")
    return values[-1]


def run_trial(config: dict, params: dict, folder: Path, flags: list[str]) -> float:
    loggers = [
        {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(folder), "name": "csv"}}
    ]
    cmd = expand(config["command"], config.get("program", ""), params)
    cmd += [
        *flags,
        f"--trainer.default_root_dir={folder}",
        f"--trainer.logger={json.dumps(loggers)}",
        "--trainer.enable_progress_bar=false",
    ]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "log.txt", "w") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy()).returncode
    if code != 0:
        raise RuntimeError(f"trial command failed with exit code {code}; see {folder / 'log.txt'}")
    return last_metric(folder, config["metric"]["name"])


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(
        prog="coadv sweep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("sweep", type=Path, help="a W&B sweep YAML (configs/sweeps/*.yaml)")
    p.add_argument("--trials", type=int, help="number of trials (default: the whole grid, else 10)")
    p.add_argument(
        "--preset", help="configs/study/<name>.yaml whose sizing (configs, flags) every trial gets (e.g. ci)"
    )
    p.add_argument("--seed", type=int, default=0, help="sampler seed")
    p.add_argument("--out", type=Path, help="output folder (default: runs/sweep_<name>)")
    args = p.parse_args(argv)
    args.sweep = config_path(args.sweep)
    config = yaml.safe_load(args.sweep.read_text())
    validate(config, str(args.sweep))
    flags = []
    if args.preset:
        from coadv.study.cells import preset_args
        from coadv.study.main import load_preset

        flags = preset_args(load_preset(args.preset))
    out = args.out or Path("runs") / f"sweep_{args.sweep.stem}"
    goal = config.get("metric", {}).get("goal", "minimize")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial comes from here instead
    study = optuna.create_study(
        direction="maximize" if goal == "maximize" else "minimize", sampler=sampler(config, args.seed)
    )
    grid_size = math.prod(len(spec.get("values", [0])) for spec in config["parameters"].values())
    n = args.trials or (grid_size if config["method"] == "grid" else 10)
    start = time.time()
    rows = run_trials(study, config, n, out, flags)
    metric = config["metric"]["name"]
    with open(out / "trials.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    short = {k: k.rsplit(".", 1)[-1] for k in rows[0]}  # model.init_args.lambda_rec -> lambda_rec: fits a screen
    print(markdown_table([short[k] for k in rows[0]], [list(r.values()) for r in rows]))
    print(
        summary(
            f"coadv sweep {args.sweep.name}",
            [
                ("trials", f"{n} in {minutes(time.time() - start)} ({config['method']}, {goal} {metric})"),
                ("best", f"trial {study.best_trial.number}: {metric} = {study.best_value:.4f}"),
                *((f"  {short[k]}", f"{v:.4g}" if isinstance(v, float) else v) for k, v in study.best_params.items()),
                ("table", out / "trials.csv"),
                ("trial runs", f"{out}/trial_<n>/ (log.txt, config.yaml, csv/)"),
            ],
        ),
        flush=True,
    )
    return rows


def run_trials(study: optuna.Study, config: dict, n: int, out: Path, flags: list[str]) -> list[dict]:
    """``n`` trials asked from ``study`` and told their metric, under one progress bar; one row per trial."""
    metric = config["metric"]["name"]
    rows = []
    with bar(n, "sweep trials", "trial") as progress:
        for i in range(n):
            trial = study.ask()
            params = {name: suggest(trial, name, spec) for name, spec in config["parameters"].items()}
            value = run_trial(config, params, out / f"trial_{i:03d}", flags)
            study.tell(trial, value)
            rows.append({"trial": i, **params, metric: value})
            tqdm.write(f"[sweep] trial {i}: {params} -> {metric} = {value:.4f}")
            progress.set_postfix_str(f"best {metric} = {study.best_value:.4f}")
            progress.update()
    return rows
