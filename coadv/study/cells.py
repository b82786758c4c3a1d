"""The study's cells: each one ordinary ``coadv fit`` run (method and direction configs, ablation fragment, preset)
at a fixed budget, evaluated at its last step; the pair's reference rows; running the cells (in worker processes
with ``--jobs``) and reading the finished ones back."""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from callbacks.stability import load_joint_judge, validation_rates
from coadv.cli import cli_main
from coadv.constants import DIRECTIONS, QUIET, config_path, translation_args
from coadv.progress import bar
from coadv.study import evaluation
from coadv.study.evaluation import joint_judge_of, pair_metrics, pair_robustness, splits
from lightning_modules import ACCR, CRCycleGAN, CycleGAN
from lightning_modules.translation_metrics import probe_informative

METHOD_CLASSES = {"cyclegan": CycleGAN, "cr_cyclegan": CRCycleGAN, "accr": ACCR}


def preset_args(preset: dict) -> list[str]:
    """A preset's sizing for every run: ``-c`` for each of its ``configs`` fragments, then its ``flags``."""
    configs = [arg for path in preset.get("configs", []) for arg in ("-c", str(config_path(path)))]
    return [*configs, *preset.get("flags", [])]


def cell_args(method: str, pair: str, seed: int, variant: Path | None, preset: dict, cell: Path) -> list[str]:
    a, b = DIRECTIONS[pair]
    args = ["fit", *translation_args(method, pair)]
    if variant is not None:
        args += ["-c", str(variant)]
    args += [
        *preset_args(preset),
        *QUIET,
        f"--seed_everything={seed}",
        f"--data.init_args.seed={seed}",
        f"--trainer.default_root_dir={cell}",
    ]
    loggers = [
        {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(cell), "name": "csv"}}
    ]
    if preset.get("wandb", True):  # one W&B run per cell; the seeds of a cell share a group
        group = f"study {variant.stem if variant else 'base'} {method}_{pair}"
        loggers.append(
            {
                "class_path": "lightning.pytorch.loggers.WandbLogger",
                "init_args": {"project": "coadv", "save_dir": str(cell), "group": group, "tags": ["study"]},
            }
        )
    args.append(f"--trainer.logger={json.dumps(loggers)}")
    svhn = preset.get("svhn")
    if svhn and svhn != "svhn":  # explicit offline stand-in for SVHN, named in the table
        args.append("--data.init_args.data_root=null")
        for side, domain in (("a", a), ("b", b)):
            if domain == "svhn":
                args += [
                    f"--data.init_args.domain_{side}={svhn}",
                    f"--model.init_args.classifier_{side}={evaluation.ensure_classifier(svhn)}",
                ]
    stability = preset.get("stability")
    if stability:  # the joint judge's curves on validation images, every n batches (draws no random number)
        probe = {
            "class_path": "callbacks.EarlyStability",
            "init_args": {"joint_judge": preset["_joint"][pair], **stability},
        }
        args.append(f"--trainer.callbacks+={json.dumps(probe)}")
    if (cell / "checkpoints" / "last.ckpt").is_file():
        args.append("--ckpt_path=last")  # an interrupted cell continues
    return args


def cell_name(method: str, pair: str, seed: int, variant: Path | None) -> str:
    return f"{variant.stem if variant else 'base'}/{method}_{pair}/seed{seed}"


def run_cell(
    method: str, pair: str, seed: int, variant: Path | None, preset: dict, out: Path, evaluate_on: str = "test"
) -> dict:
    cell = out / "cells" / cell_name(method, pair, seed, variant)
    done = cell / "metrics.json"
    if done.is_file():
        record = json.loads(done.read_text())
        if preset.get("robustness") and "rob_mean_a2b" not in record:  # the same run's last nets, no second training
            model = METHOD_CLASSES[method].load_from_checkpoint(cell / "checkpoints" / "last.ckpt", map_location="cpu")
            record.update(pair_robustness(pair_datamodule(pair, preset, out), model, preset))
            done.write_text(json.dumps(record, indent=1))
        return record
    start = time.time()
    cli = cli_main(cell_args(method, pair, seed, variant, preset, cell))
    model = cli.model.cpu()
    dm = cli.datamodule
    record = {
        "variant": variant.stem if variant else "base",
        "method": method,
        "pair": pair,
        "seed": seed,
        "steps": int(cli.trainer.global_step) // 2,  # two optimizer steps per batch
        "train_s": round(time.time() - start, 1),
    }
    record.update(pair_metrics(dm, model.g_ab, model.g_ba, model.evaluator.paths, preset, evaluate_on))
    record["evaluated_on"] = evaluate_on
    if preset.get("robustness"):
        record.update(pair_robustness(dm, model, preset))
    if preset.get("stability"):
        record.update(read_curves(cell))
    record["wall_s"] = round(time.time() - start, 1)
    done.write_text(json.dumps(record, indent=1))
    return record


def read_curves(cell: Path) -> dict[str, list]:
    """The cell's logged curves over every launch (a resumed cell logs to a new version folder; the later value of
    a step wins): ``curve_<a2b|b2a>`` ([batch, joint-judge rate] from ``EarlyStability``) and ``loss_g`` /
    ``loss_d`` ([batch, value] of the generator and discriminator losses)."""
    series: dict[str, dict[int, float]] = {"curve_a2b": {}, "curve_b2a": {}, "loss_g": {}, "loss_d": {}}
    logs = sorted(cell.glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    for log in logs:
        with open(log, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("stability/batch"):
                    batch = int(float(row["stability/batch"]))
                    for side in ("a2b", "b2a"):
                        series[f"curve_{side}"][batch] = float(row[f"stability/joint_{side}"])
                for name, key in (("loss_g", "train/g_loss"), ("loss_d", "train/d_loss")):
                    if row.get(key) and row.get("step"):
                        series[name][int(float(row["step"])) + 1] = float(row[key])  # step: 0-based batch
    return {k: sorted([b, v] for b, v in pts.items()) for k, pts in series.items()}


def run_cells(cells: list[tuple], preset: dict, out: Path, evaluate_on: str = "test") -> tuple[list[dict], int]:
    """Every cell's record, in order, under one progress bar (finished cells are reused); and how many were reused."""
    finished = [(out / "cells" / cell_name(*cell) / "metrics.json").is_file() for cell in cells]
    records = []
    with bar(len(cells), "study cells", "cell", initial=sum(finished)) as progress:
        for cell, done in zip(cells, finished):
            if not done:
                progress.set_postfix_str(cell_name(*cell))
            records.append(run_cell(*cell, preset, out, evaluate_on))
            if not done:
                progress.update()
    return records, sum(finished)


def run_workers(raw: list[str], jobs: int, out: Path) -> None:
    """Train the cells in ``jobs`` child processes (``coadv study ... --worker i/jobs``, one thread each, every
    ``jobs``-th cell in the seed-major order), logging to ``<out>/worker_<i>.log``; a failed worker stops the study
    with its log named (finished cells are kept and reused)."""
    args = [a for i, a in enumerate(raw) if not (a.startswith("--jobs") or (i and raw[i - 1] == "--jobs"))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    logs = [out / f"worker_{i}.log" for i in range(jobs)]
    children = []
    for i, log in enumerate(logs):
        with open(log, "w") as f:
            command = [sys.executable, "-m", "coadv", "study", *args, "--worker", f"{i}/{jobs}"]
            children.append(subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, env=env))
    print(f"study: {jobs} worker processes, logs {', '.join(map(str, logs))}", flush=True)
    failed = [log for child, log in zip(children, logs) if child.wait() != 0]
    if failed:
        raise SystemExit(
            f"study: worker failed, see {', '.join(map(str, failed))} (rerun to continue: finished cells are reused)"
        )


def finished_records(out: Path) -> list[dict]:
    """Every finished cell under ``<out>/cells``: base first, then variants by name; pairs, seeds and methods in
    their usual order."""
    methods = list(METHOD_CLASSES)
    pairs = list(DIRECTIONS)
    records = [json.loads(f.read_text()) for f in (out / "cells").glob("*/*/seed*/metrics.json")]

    def place(items: list[str], item: str) -> int:
        return items.index(item) if item in items else len(items)

    return sorted(
        records,
        key=lambda r: (
            r["variant"] != "base",
            r["variant"],
            place(pairs, r["pair"]),
            r["pair"],
            r["seed"],
            place(methods, r["method"]),
            r["method"],
        ),
    )


def pair_datamodule(pair: str, preset: dict, out: Path):
    """The pair's DataModule, set up for fit, as its CycleGAN config + the preset build it (the same data and
    judges as every cell of the pair); the CLI that built it is ``dm.cli``."""
    args = cell_args(
        "cyclegan", pair, 0, None, {**preset, "wandb": False, "stability": None}, out / "references" / pair
    )
    args = [a for a in args if not a.startswith(("--trainer.logger=", "--ckpt_path="))]
    cli = cli_main([*args[1:], "--trainer.logger=false"], run=False)  # args[0] is "fit": no subcommand here
    dm = cli.datamodule
    dm.setup("fit")
    dm.cli = cli
    return dm


def pair_references(pair: str, preset: dict, out: Path) -> dict:
    """The reference rows of a pair (no translation, target oracle, target train vs test), computed once and kept
    in ``<out>/references/<pair>.json``; built on the data and judges of the pair's CycleGAN config + preset. A kept
    record gains the rows a preset asks for later (the curves' validation floor, robustness) without recomputing
    the rest."""
    path = out / "references" / f"{pair}.json"
    record = json.loads(path.read_text()) if path.is_file() else None
    stability = preset.get("stability")
    robustness = preset.get("robustness")
    wanted = [
        "joint_judge",
        "tot_informative_a2b",
        *(["joint_src_val_a2b"] * bool(stability)),
        *(["rob_mean_a2b"] * bool(robustness)),
    ]
    if record is not None and all(k in record for k in wanted):
        return record
    dm = pair_datamodule(pair, preset, out)
    if record is None:
        record = {"pair": pair, **pair_metrics(dm, None, None, dm.cli.model.evaluator.paths, preset)}
        a, b = splits(dm)
        for side, target in (("a2b", b), ("b2a", a)):
            src = record[f"tot_src_{side}"]
            oracle = record[f"tot_oracle_{side}"]
            record[f"tot_informative_{side}"] = float(probe_informative(src, oracle, len(target.test_y)))
    record["joint_judge"] = str(joint_judge_of(dm, preset))
    if stability:  # the curves' no-translation floor, on the validation images the curves use
        joint = load_joint_judge(record["joint_judge"])
        floor = validation_rates(joint, None, None, dm, stability.get("max_images", 500))
        record.update({f"joint_src_val_{side}": v for side, v in floor.items()})
    if robustness and "rob_mean_a2b" not in record:  # no translation: the joint judge on corrupted source images
        identity = argparse.Namespace(g_ab=None, g_ba=None)
        record.update(pair_robustness(dm, identity, preset))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return record
