"""The translation study: {CycleGAN, CR-CycleGAN, ACCR} x directions x seeds (x ablation variants) -> tables + plot.

    coadv study --preset ci                                   # CI-sized, embedded data, 2 CPU cores
    coadv study --preset full --out runs/study_full           # paper-sized, for GPU users
    coadv study --preset ci --methods accr --directions m2mm --variants configs/ablations/augment/*.yaml

Each cell is one ordinary `coadv fit` run of `configs/translation/<method>_<direction>.yaml` (+ the preset's
flags, + an ablation fragment), logging to CSV (and W&B), then `test` of the checkpoint its ModelCheckpoint chose
on validation (val/acc_mean, held out of training): the tables hold those test numbers, never a maximum over
epochs of test numbers. A cell that finished has `metrics.json` and is skipped on the next start; an interrupted
cell resumes from its last checkpoint. The table is rebuilt from the cells' files every time, so an interrupted and
restarted study gives the same table.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from coadv import results
from coadv.cli import cli_main
from coadv.constants import CONFIGS, DIRECTIONS, METHODS, QUIET
from coadv.progress import bar, minutes, quiet_lightning, summary


def _check(kind: str, names: list[str], valid) -> None:
    bad = [n for n in names if n not in valid]
    if bad:
        raise SystemExit(f"unknown {kind} {', '.join(map(repr, bad))}; valid {kind}s: {', '.join(valid)}")


def ensure_classifier(domain: str, extra: list[str] = (), trained: list | None = None) -> Path:
    """The evaluation classifier of ``domain`` (trained with its config when absent; its CLI appended to
    ``trained`` when given)."""
    path = Path("checkpoints") / "classifiers" / f"{domain}.ckpt"
    if not path.is_file():
        tqdm.write(f"[study] training the {domain} evaluation classifier -> {path}")
        cli = cli_main(["fit", "-c", str(CONFIGS / "classifier" / f"{domain}.yaml"), *QUIET, *extra])
        score = cli.trainer.checkpoint_callback.best_model_score
        tqdm.write(f"[study] {domain} classifier: chosen on held-out val/acc = {float(score):.3f}")
        if trained is not None:
            trained.append((f"{domain} classifier", cli))
    return path


@torch.no_grad()
def judged_correct(dataset, classifier: Path | str, translate=None, batch: int = 500, device="cpu") -> torch.Tensor:
    """Per image of ``dataset`` (a ``DigitDataset``, scaled as it feeds a model): 1.0 where ``classifier`` gives the
    image's label, after ``translate`` when given."""
    from nets.classifier import load_digit_net

    judge = load_digit_net(classifier).to(device)
    x, y = dataset.images.float() / 127.5 - 1, dataset.labels
    if dataset.channels == 1:
        x = x.mean(1, keepdim=True)
    out = []
    for chunk in x.split(batch):
        chunk = chunk.to(device)
        out.append(judge(translate(chunk) if translate is not None else chunk).argmax(1).cpu())
    return (torch.cat(out) == y).float()


def source_only_accuracy(dataset, classifier: Path | str) -> float:
    """Accuracy of the target domain's classifier on untranslated source test images: the no-translation baseline."""
    return float(judged_correct(dataset, classifier).mean())


def cell_config(cell: Path) -> dict:
    """The resolved config a cell's latest launch ran with (LightningCLI writes it beside the CSV log)."""
    configs = sorted(cell.glob("csv/version_*/config.yaml"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not configs:
        raise SystemExit(f"{cell}: no csv/version_*/config.yaml (the cell's resolved config) to read")
    return yaml.safe_load(configs[-1].read_text())


def cell_baselines(cell: Path) -> dict:
    """The cell's no-translation baselines (``base_a2b``: its B classifier on its A test images; ``base_b2a``
    likewise) and how long it trained (``epochs_run``, ``max_epochs``), from the cell's own resolved config: the
    same test images (data settings, ``test_limit``) and the same judges as the cell's test numbers."""
    config = cell_config(cell)
    data = config["data"]
    module, name = data["class_path"].rsplit(".", 1)
    dm = getattr(importlib.import_module(module), name)(**data.get("init_args", {}))
    dm.setup("test")
    judges = config["model"]["init_args"]
    return {
        "base_a2b": source_only_accuracy(dm.test_a, judges["classifier_b"]),
        "base_b2a": source_only_accuracy(dm.test_b, judges["classifier_a"]),
        "epochs_run": len(results.read_curve(cell)),
        "max_epochs": config["trainer"]["max_epochs"],
    }


def test_chosen_checkpoint(cli) -> dict:
    """Test numbers of the checkpoint that the run's ModelCheckpoint chose on a ``val/`` metric, with the metric,
    the epoch and the validation score that chose it (``selected_on``, ``selected_epoch``, ``val_score``)."""
    ckpt = cli.trainer.checkpoint_callback
    monitor = getattr(ckpt, "monitor", None) or ""
    if not monitor.startswith("val/") or not ckpt.best_model_path:
        raise SystemExit(
            f"{cli.trainer.default_root_dir}: no checkpoint chosen on validation (ModelCheckpoint monitor "
            f"{monitor or None!r}, best checkpoint {getattr(ckpt, 'best_model_path', '') or 'none'}); test numbers "
            "are reported only for a checkpoint chosen on a val/ metric (as configs/translation/*.yaml set it)"
        )
    path = ckpt.best_model_path
    test = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=path, verbose=False)[0]
    epoch = torch.load(path, map_location="cpu", weights_only=False)["epoch"]  # a checkpoint this run wrote
    return {
        **{k.removeprefix("test/"): float(v) for k, v in test.items() if k.startswith("test/")},
        "selected_on": monitor,
        "selected_epoch": int(epoch),
        "val_score": float(ckpt.best_model_score),
    }


def cell_args(method: str, direction: str, seed: int, variant: Path | None, preset: dict, cell: Path) -> list[str]:
    a, b = DIRECTIONS[direction]
    args = ["fit", "-c", str(CONFIGS / "translation" / f"{method}_{direction}.yaml")]
    if variant is not None:
        args += ["-c", str(variant)]
    args += [*preset.get("flags", []), *QUIET, f"--seed_everything={seed}", f"--trainer.default_root_dir={cell}"]
    loggers = [
        {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(cell), "name": "csv"}}
    ]
    if preset.get("wandb", True):  # one W&B run per cell; the seeds of a cell share a group
        group = f"study {variant.stem if variant else 'base'} {method}_{direction}"
        loggers.append({"class_path": "lightning.pytorch.loggers.WandbLogger",
                        "init_args": {"project": "coadv", "save_dir": str(cell), "group": group, "tags": ["study"]}})  # fmt: skip
    args.append(f"--trainer.logger={json.dumps(loggers)}")
    svhn = preset.get("svhn")
    if svhn and svhn != "svhn":  # explicit offline stand-in for SVHN, named in the table
        args.append("--data.init_args.data_root=null")
        for side, domain in (("a", a), ("b", b)):
            if domain == "svhn":
                args += [f"--data.init_args.domain_{side}={svhn}",
                         f"--model.init_args.classifier_{side}={ensure_classifier(svhn)}"]  # fmt: skip
    if (cell / "checkpoints" / "last.ckpt").is_file():
        args.append("--ckpt_path=last")  # an interrupted cell continues
    return args


def cell_name(method: str, direction: str, seed: int, variant: Path | None) -> str:
    return f"{variant.stem if variant else 'base'}/{method}_{direction}/seed{seed}"


def run_cell(method: str, direction: str, seed: int, variant: Path | None, preset: dict, out: Path) -> dict:
    cell = out / "cells" / cell_name(method, direction, seed, variant)
    done = cell / "metrics.json"
    if done.is_file():
        record = json.loads(done.read_text())
        if "selected_epoch" not in record:
            raise SystemExit(
                f"{done} holds last-epoch validation numbers from an older study (validation was then the test "
                "split); delete that cell folder (or choose another --out) to measure it as now: test numbers of "
                "the checkpoint chosen on validation"
            )
        if "base_a2b" not in record:  # a cell finished before baselines were recorded: add them from its files
            record.update(cell_baselines(cell))
            done.write_text(json.dumps(record, indent=1))
        return record
    start = time.time()
    cli = cli_main(cell_args(method, direction, seed, variant, preset, cell))
    record = {"variant": variant.stem if variant else "base", "method": method, "direction": direction, "seed": seed,
              **test_chosen_checkpoint(cli), "wall_s": round(time.time() - start, 1)}  # fmt: skip
    record.update(cell_baselines(cell))
    done.write_text(json.dumps(record, indent=1))
    return record


def load_preset(name_or_path: str) -> dict:
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIGS / "study" / f"{name_or_path}.yaml"
    if not path.is_file():
        valid = sorted(p.stem for p in (CONFIGS / "study").glob("*.yaml"))
        raise SystemExit(f"study preset {name_or_path!r} not found ({path}); valid presets: {', '.join(valid)}")
    return yaml.safe_load(path.read_text())


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(
        prog="coadv study", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="ci", help="configs/study/<name>.yaml or a path")
    p.add_argument("--methods", nargs="+", help=f"subset of {', '.join(METHODS)} (default: the preset's)")
    p.add_argument("--directions", nargs="+", help=f"subset of {', '.join(DIRECTIONS)} (default: the preset's)")
    p.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the preset's)")
    p.add_argument("--variants", nargs="+", type=Path, help="ablation config fragments, each run as its own variant")
    p.add_argument("--out", type=Path, help="output folder (default: runs/study_<preset>)")
    args = p.parse_args(argv)
    preset = load_preset(args.preset)
    methods = args.methods or preset["methods"]
    directions = args.directions or preset["directions"]
    seeds = args.seeds if args.seeds is not None else preset["seeds"]
    _check("method", methods, METHODS)
    _check("direction", directions, DIRECTIONS)
    for variant in args.variants or []:
        if not variant.is_file():
            raise SystemExit(f"ablation variant {str(variant)!r} does not exist")
    out = args.out or Path("runs") / f"study_{Path(args.preset).stem}"
    out.mkdir(parents=True, exist_ok=True)
    svhn = preset.get("svhn", "svhn")
    start = time.time()
    with quiet_lightning():
        for domain in {d for direction in directions for d in DIRECTIONS[direction]} - {"svhn"} | ({svhn} - {"svhn"}):
            ensure_classifier(domain)
        cells = [(method, direction, seed, variant) for variant in (args.variants or [None]) for method in methods
                 for direction in directions for seed in seeds]  # fmt: skip
        records, reused = run_cells(cells, preset, out)
    two_way = bool(preset.get("both_ways", False))
    table_run = results.write(records, out, svhn_name=svhn, preset=args.preset, two_way=two_way)
    print((out / "results.md").read_text())
    print(summary(f"coadv study --preset {args.preset}", [
        ("cells", f"{len(cells)} ({len(cells) - reused} run now, {reused} reused) in {minutes(time.time() - start)}"),
        ("tables", f"{out / 'results.md'}, {out / 'results.csv'}, {out / 'cells.csv'}"),
        ("plots", f"{out / 'results.png'}, {out / 'curves.png'} (validation curves)"),
        ("cell runs", f"{out / 'cells'}/<variant>/<method>_<direction>/seed<n>/ (config.yaml, csv/, checkpoints/)"),
        ("W&B", table_run),
    ]))  # fmt: skip
    return records


def run_cells(cells: list[tuple], preset: dict, out: Path) -> tuple[list[dict], int]:
    """Every cell's record, in order, under one progress bar (finished cells are reused); and how many were reused."""
    finished = [(out / "cells" / cell_name(*cell) / "metrics.json").is_file() for cell in cells]
    records = []
    with bar(len(cells), "study cells", "cell", initial=sum(finished)) as progress:
        for cell, done in zip(cells, finished):
            if not done:
                progress.set_postfix_str(cell_name(*cell))
            records.append(run_cell(*cell, preset, out))
            if not done:
                progress.update()
    return records, sum(finished)
