"""The translation study: {CycleGAN, CR-CycleGAN, ACCR} x domain pairs x seeds (x ablation variants) -> tables.

    coadv study --preset cpu                                  # M <-> MM and M <-> USPS, 3 methods x 4 seeds, 2 cores
    coadv study --preset gpu --out runs/study_gpu             # paper scale, one GPU
    coadv study --preset cpu --methods accr --pairs m2mm --seeds 0 1 2 --variants configs/ablations/cr_reduce/*.yaml

Protocol (fixed budget, paired): every cell is one ordinary `coadv fit` run of
`configs/translation/<method>_<pair>.yaml` (+ the preset's flags, + an ablation fragment) for the same number of
steps, LR constant then linearly decaying, no early stopping and no checkpoint selection: the cell is evaluated at
its last step. A seed fixes `seed_everything` and `data.seed`, so every method of a seed sees the same batches in
the same order and starts from the same nets where the architectures agree. One CycleGAN trains both generators,
so a cell gives both directions of its pair. Metrics (`lightning_modules.translation_metrics`) on the test splits:
train-on-translated / test-on-real-target, target judge, joint judge, KID / FID, next to reference rows computed
once per pair. Tables (`coadv.results`): mean ± std per method, paired differences against CycleGAN with a 95 %
Student-t interval over seeds, and a verdict per metric and direction.

A finished cell has `metrics.json` and is skipped on the next start; an interrupted cell resumes from its last
checkpoint. Tables are rebuilt from the cells' files every time.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from callbacks.stability import load_joint_judge, validation_rates
from coadv import results
from coadv.cli import cli_main
from coadv.constants import CONFIGS, DIRECTIONS, METHODS, QUIET, config_path
from coadv.progress import bar, minutes, quiet_lightning, summary
from lightning_modules import ACCR, CRCycleGAN, CycleGAN
from lightning_modules.translation_metrics import (
    Recipe,
    Split,
    direction_metrics,
    fit_joint_judge,
    probe_informative,
    reference_metrics,
    robustness_metrics,
)

METHOD_CLASSES = {"cyclegan": CycleGAN, "cr_cyclegan": CRCycleGAN, "accr": ACCR}


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
    x, y = as_tensors(dataset)
    out = []
    for chunk in x.split(batch):
        chunk = chunk.to(device)
        out.append(judge(translate(chunk) if translate is not None else chunk).argmax(1).cpu())
    return (torch.cat(out) == y).float()


def as_tensors(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``DigitDataset``'s images as the nets read them (float in [-1, 1], its channels) and its labels."""
    x = dataset.images.float() / 127.5 - 1
    return (x.mean(1, keepdim=True) if dataset.channels == 1 else x), dataset.labels


def splits(dm, evaluate_on: str = "test") -> tuple[Split, Split]:
    """Domain A and B of a set-up ``UnpairedDigitsDataModule``: training tensors (validation held out) and the
    evaluation tensors: the test split, or with ``evaluate_on="val"`` the held-out validation images (searches)."""
    if evaluate_on not in ("test", "val"):
        raise ValueError(f"evaluate_on={evaluate_on!r} is not 'test' or 'val'")
    out = []
    for side in "ab":
        train, held = getattr(dm, f"train_{side}"), getattr(dm, f"{evaluate_on}_{side}")
        out.append(Split(*as_tensors(train), *as_tensors(held)))
    return out[0], out[1]


def joint_judge_file(dm, a: Split, b: Split, steps: int, folder: str = "checkpoints/classifiers") -> Path:
    """The pair's 20-class joint judge, trained once (``Recipe(steps=steps)``) and cached as
    ``<folder>/joint_<a>_<b>-<digest>.pt``, the digest naming the data and recipe it was made from."""
    key = json.dumps([dm.domain_a, dm.domain_b, dm.mnist_m_recipe, dm.image_size, dm.val_size, len(a.train_y),
                      len(b.train_y), steps, float(a.train_x.sum()), float(b.train_x.sum())])  # fmt: skip
    path = Path(folder) / f"joint_{dm.domain_a}_{dm.domain_b}-{hashlib.sha1(key.encode()).hexdigest()[:8]}.pt"
    if not path.is_file():
        tqdm.write(f"[study] training the joint judge {dm.domain_a} x {dm.domain_b} ({steps} steps) -> {path}")
        net = fit_joint_judge(a.train_x, a.train_y, b.train_x, b.train_y, Recipe(steps=steps))
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"config": net.config, "state_dict": net.state_dict(), "key": key}, path)
    return path


def joint_judge_of(dm, preset: dict) -> Path:
    a, b = splits(dm)
    return joint_judge_file(
        dm, a, b, preset.get("joint_steps", 1500), preset.get("judges_dir", "checkpoints/classifiers")
    )


def pair_metrics(dm, g_ab, g_ba, judges: dict[str, str], preset: dict, evaluate_on: str = "test") -> dict[str, float]:
    """Every metric of both directions of a trained pair (``g_ab`` / ``g_ba``; ``None``: the reference rows instead),
    keys ``<metric>_a2b`` / ``<metric>_b2a``, on the test split (or the validation split: ``evaluate_on="val"``)."""
    from nets.classifier import load_digit_net

    a, b = splits(dm, evaluate_on)
    joint = load_joint_judge(str(joint_judge_of(dm, preset)))
    recipe = Recipe(steps=preset.get("probe_steps", 500))
    out = {}
    for key, net, src, tgt, judge, index in (("a2b", g_ab, a, b, judges["b"], 1), ("b2a", g_ba, b, a, judges["a"], 0)):
        judge = load_digit_net(judge)
        if net is None and g_ab is None:
            metrics = reference_metrics(src, tgt, judge, joint, index, recipe)
        else:
            metrics = direction_metrics(net, src, tgt, judge, joint, index, recipe)
        out.update({f"{k}_{key}": v for k, v in metrics.items()})
    return out


def cell_args(method: str, pair: str, seed: int, variant: Path | None, preset: dict, cell: Path) -> list[str]:
    a, b = DIRECTIONS[pair]
    args = ["fit", "-c", str(CONFIGS / "translation" / f"{method}_{pair}.yaml")]
    if variant is not None:
        args += ["-c", str(variant)]
    args += [*preset.get("flags", []), *QUIET, f"--seed_everything={seed}", f"--data.init_args.seed={seed}",
             f"--trainer.default_root_dir={cell}"]  # fmt: skip
    loggers = [
        {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(cell), "name": "csv"}}
    ]
    if preset.get("wandb", True):  # one W&B run per cell; the seeds of a cell share a group
        group = f"study {variant.stem if variant else 'base'} {method}_{pair}"
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
    stability = preset.get("stability")
    if stability:  # the joint judge's curves on validation images, every n batches (draws no random number)
        probe = {"class_path": "callbacks.EarlyStability",
                 "init_args": {"joint_judge": preset["_joint"][pair], **stability}}  # fmt: skip
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
        if "tot_a2b" not in record:
            raise SystemExit(f"{done} is a cell of an older study protocol (checkpoint chosen on validation); delete "
                             "that cell folder (or choose another --out) to measure it under the fixed-budget protocol")  # fmt: skip
        if preset.get("robustness") and "rob_mean_a2b" not in record:  # the same run's last nets, no second training
            model = METHOD_CLASSES[method].load_from_checkpoint(cell / "checkpoints" / "last.ckpt", map_location="cpu")
            record.update(pair_robustness(pair_datamodule(pair, preset, out), model, preset))
            done.write_text(json.dumps(record, indent=1))
        return record
    start = time.time()
    cli = cli_main(cell_args(method, pair, seed, variant, preset, cell))
    model, dm = cli.model.cpu(), cli.datamodule
    record = {"variant": variant.stem if variant else "base", "method": method, "pair": pair, "seed": seed,
              "steps": int(cli.trainer.global_step) // 2,  # two optimizer steps per batch
              "train_s": round(time.time() - start, 1)}  # fmt: skip
    record.update(pair_metrics(dm, model.g_ab, model.g_ba, model.evaluator.paths, preset, evaluate_on))
    record["evaluated_on"] = evaluate_on
    if preset.get("robustness"):
        record.update(pair_robustness(dm, model, preset))
    if preset.get("stability"):
        record.update(read_curves(cell))
    record["wall_s"] = round(time.time() - start, 1)
    done.write_text(json.dumps(record, indent=1))
    return record


def pair_robustness(dm, model, preset: dict) -> dict[str, float]:
    """``robustness_metrics`` of both directions (``rob_<kind>_<severity>_<a2b|b2a>``, ``rob_mean_...``): the
    joint judge on translations of corrupted test images, the same corrupted images for every cell."""
    a, b = splits(dm)
    joint = load_joint_judge(str(joint_judge_of(dm, preset)))
    out = {}
    for key, net, src, index in (("a2b", model.g_ab, a, 1), ("b2a", model.g_ba, b, 0)):
        out.update({f"{k}_{key}": v for k, v in robustness_metrics(net, src, joint, index).items()})
    return out


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
    record gains what later versions add (the probe's informativeness, the curves' validation floor) without
    recomputing the rest."""
    path = out / "references" / f"{pair}.json"
    record = json.loads(path.read_text()) if path.is_file() else None
    stability, robustness = preset.get("stability"), preset.get("robustness")
    wanted = ["joint_judge", "tot_informative_a2b", *(["joint_src_val_a2b"] * bool(stability)),
              *(["rob_mean_a2b"] * bool(robustness))]  # fmt: skip
    if record is not None and all(k in record for k in wanted):
        return record
    dm = pair_datamodule(pair, preset, out)
    if record is None:
        record = {"pair": pair, **pair_metrics(dm, None, None, dm.cli.model.evaluator.paths, preset)}
    record["joint_judge"] = str(joint_judge_of(dm, preset))
    if "tot_informative_a2b" not in record:
        a, b = splits(dm)
        for side, target in (("a2b", b), ("b2a", a)):
            src, oracle = record[f"tot_src_{side}"], record[f"tot_oracle_{side}"]
            record[f"tot_informative_{side}"] = float(probe_informative(src, oracle, len(target.test_y)))
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
    p.add_argument("--preset", default="cpu", help="configs/study/<name>.yaml or a path")
    p.add_argument("--methods", nargs="+", help=f"subset of {', '.join(METHODS)} (default: the preset's)")
    p.add_argument("--pairs", nargs="+", help=f"domain pairs, each trained both ways ({', '.join(DIRECTIONS)}; "
                   "default: the preset's)")  # fmt: skip
    p.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the preset's)")
    p.add_argument("--variants", nargs="+", type=Path, help="ablation config fragments, each run as its own variant")
    p.add_argument("--out", type=Path, help="output folder (default: runs/study_<preset>)")
    p.add_argument("--tables-only", action="store_true", help="rebuild the tables from the finished cells only")
    p.add_argument("--search", action="store_true", help="the preset's hyperparameter search instead: each method's "
                   "`search` fragments at its `search_seeds`, scored on validation images (never test)")  # fmt: skip
    p.add_argument("--jobs", type=int, default=1, help="cells trained at once, each in its own 1-thread process "
                   "(2 on 2 cores: the cpu preset's cells are too small to use 2 threads well)")  # fmt: skip
    p.add_argument("--worker", help=argparse.SUPPRESS)  # "i/N": the i-th of N --jobs processes (no tables)
    raw = list(sys.argv[2:] if argv is None else argv)
    args = p.parse_args(raw)
    if args.jobs < 1:
        raise SystemExit(f"--jobs {args.jobs}: must be at least 1")
    preset = load_preset(args.preset)
    if args.search:
        return search(preset, args)
    methods = args.methods or preset["methods"]
    pairs = args.pairs or preset["pairs"]
    seeds = args.seeds if args.seeds is not None else preset["seeds"]
    _check("method", methods, METHODS)
    _check("pair", pairs, DIRECTIONS)
    for variant in args.variants or []:
        if not variant.is_file():
            raise SystemExit(f"ablation variant {str(variant)!r} does not exist")
    out = args.out or Path("runs") / f"study_{Path(args.preset).stem}"
    out.mkdir(parents=True, exist_ok=True)
    svhn = preset.get("svhn", "svhn")
    start = time.time()
    # seed-major: the cells finished at any moment are whole paired sets (every method of a seed)
    cells = [(method, pair, seed, variant) for variant in (args.variants or [None]) for pair in pairs
             for seed in seeds for method in methods]  # fmt: skip
    with quiet_lightning():
        if args.worker:  # the parent built the classifiers and references
            index, count = map(int, args.worker.split("/"))
            preset["_joint"] = {pair: json.loads((out / "references" / f"{pair}.json").read_text())["joint_judge"]
                                for pair in pairs}  # fmt: skip
            run_cells(cells[index::count], preset, out)
            return []
        if args.tables_only:
            found = [out / "cells" / cell_name(*cell) / "metrics.json" for cell in cells]
            records, reused = [json.loads(f.read_text()) for f in found if f.is_file()], 0
            references = [json.loads(f.read_text()) for f in sorted((out / "references").glob("*.json"))]
        else:
            domains = {d for pair in pairs for d in DIRECTIONS[pair]}
            for domain in sorted(domains - {"svhn"} | ({svhn} if "svhn" in domains else set())):
                ensure_classifier(domain)
            references = [pair_references(pair, preset, out) for pair in pairs]
            preset["_joint"] = {r["pair"]: r["joint_judge"] for r in references}
            if args.jobs > 1:
                before = sum((out / "cells" / cell_name(*c) / "metrics.json").is_file() for c in cells)
                run_workers(raw, args.jobs, out)
            records, reused = run_cells(cells, preset, out)  # with --jobs: every cell finished, read back
            reused = before if args.jobs > 1 else reused
            # the tables cover every pair in the folder: its references too, not only this call's pairs
            references = [json.loads(f.read_text()) for f in sorted((out / "references").glob("*.json"))]
    # the tables hold every finished cell of the folder (base and ablation variants alike), not only this call's
    finished = finished_records(out)
    results.write(finished + searched_records(finished, out), references, out, preset=args.preset, svhn_name=svhn)
    print((out / "results.md").read_text())
    print(summary(f"coadv study --preset {args.preset}", [
        ("cells", f"{len(records)} of {len(cells)} ("
                  + ("finished cells read, none run" if args.tables_only else f"{len(records) - reused} run now, "
                     f"{reused} reused") + f") in {minutes(time.time() - start)}"),
        ("tables", f"{out / 'results.md'}, {out / 'cells.csv'}, {out / 'results.png'}"),
        ("cell runs", f"{out / 'cells'}/<variant>/<method>_<pair>/seed<n>/ (config.yaml, csv/, checkpoints/)"),
    ]))  # fmt: skip
    return records


def leaves_base(fragment: str, method: str, pair: str) -> bool:
    """Whether a config fragment only restates values the method's config for the pair already has (the search
    point equal to the base cells, e.g. lambda 10)."""

    def flat(tree: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in tree.items():
            out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return out

    mine = flat(yaml.safe_load(config_path(fragment).read_text()) or {})
    base = flat(yaml.safe_load(config_path(f"configs/translation/{method}_{pair}.yaml").read_text()) or {})
    return all(key in base and base[key] == value for key, value in mine.items())


def searched_records(records: list[dict], out: Path) -> list[dict]:
    """The comparison at each method's searched weights: copies (variant ``SEARCHED``, ``searched_from`` naming the
    source) of the cells of the variant ``<out>/search/search.json`` chose for a method and pair (``base`` when the
    chosen fragment restates the base config), with CycleGAN's base cells (nothing to search). A pair the search did
    not cover takes the method's choice when the searched pairs agree on one; a choice without finished cells is
    left out with a message."""
    path = out / "search" / "search.json"
    if not path.is_file():
        return []
    chosen, copies = json.loads(path.read_text()), []
    chosen.pop("cyclegan", None)
    for pair in dict.fromkeys(r["pair"] for r in records):
        mine = []
        for method, per_pair in chosen.items():
            choices = set(per_pair.values())
            variant = per_pair.get(pair) or (next(iter(choices)) if len(choices) == 1 else None)
            found = [r for r in records if (r["method"], r["pair"], r["variant"]) == (method, pair, variant)]
            if not found:
                print(f"λ searched: {method} {pair} at {variant}: no finished cells yet, left out", file=sys.stderr)
            mine += found
        if mine:
            mine += [r for r in records if (r["method"], r["pair"], r["variant"]) == ("cyclegan", pair, "base")]
        copies += [{**r, "variant": results.SEARCHED, "searched_from": r["variant"]} for r in mine]
    return copies


def finished_records(out: Path) -> list[dict]:
    """Every finished cell under ``<out>/cells``: base first, then variants by name; pairs, seeds and methods in
    their usual order."""
    methods, pairs = list(METHOD_CLASSES), list(DIRECTIONS)
    records = [json.loads(f.read_text()) for f in (out / "cells").glob("*/*/seed*/metrics.json")]
    records = [r for r in records if {"variant", "method", "pair", "seed", "tot_a2b"} <= r.keys()]  # this protocol's

    def place(items: list[str], item: str) -> int:
        return items.index(item) if item in items else len(items)

    return sorted(records, key=lambda r: (r["variant"] != "base", r["variant"], place(pairs, r["pair"]), r["pair"],
                                          r["seed"], place(methods, r["method"]), r["method"]))  # fmt: skip


def search(preset: dict, args) -> list[dict]:
    """Every method's small search (preset ``search``: method -> config fragments; ``search_seeds``), each cell at
    the preset's budget and scored on the **validation** images by the train-on-translated probe, averaged over both
    directions and the seeds; ``<out>/search/search.md`` names the chosen fragment per method and pair."""
    grid = preset.get("search") or {}
    methods = [m for m in (args.methods or grid) if m in grid]
    pairs = args.pairs or preset["pairs"]
    _check("method", methods, METHODS)
    _check("pair", pairs, DIRECTIONS)
    for method in methods:
        for fragment in grid[method]:
            if not config_path(fragment).is_file():
                raise SystemExit(f"search fragment {fragment!r} of {method} does not exist")
    out = (args.out or Path("runs") / f"study_{Path(args.preset).stem}") / "search"
    cells = [(m, pair, seed, config_path(f)) for m in methods for f in grid[m] for pair in pairs
             for seed in preset.get("search_seeds", [100])]  # fmt: skip
    with quiet_lightning():
        if preset.get("stability"):
            main_out = out.parent
            preset["_joint"] = {pair: pair_references(pair, preset, main_out)["joint_judge"] for pair in pairs}
        records, _ = run_cells(cells, preset, out, evaluate_on="val")
    chosen: dict[str, dict[str, str]] = {}
    lines = ["| method | pair | fragment | validation train-on-translated (mean of both directions, seeds) | chosen |",
             "|---|---|---|---|---|"]  # fmt: skip
    for method in methods:
        for pair in pairs:
            score = {}
            for fragment in grid[method]:
                mine = [
                    r for r in records if (r["method"], r["pair"], r["variant"]) == (method, pair, Path(fragment).stem)
                ]
                score[fragment] = sum(r["tot_a2b"] + r["tot_b2a"] for r in mine) / (2 * len(mine))
            best = max(score, key=score.get)
            chosen.setdefault(method, {})[pair] = "base" if leaves_base(best, method, pair) else Path(best).stem
            lines += [
                f"| {METHODS[method]} | {pair} | `{f}` | {v:.3f} | {'yes' if f == best else ''} |"
                for f, v in score.items()
            ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "search.md").write_text("\n".join(lines) + "\n")
    earlier = json.loads((out / "search.json").read_text()) if (out / "search.json").is_file() else {}
    for method, per_pair in chosen.items():  # a search of some methods or pairs keeps the others' choices
        earlier.setdefault(method, {}).update(per_pair)
    (out / "search.json").write_text(json.dumps(earlier, indent=1) + "\n")
    print((out / "search.md").read_text())
    return records


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
        raise SystemExit(f"study: worker failed, see {', '.join(map(str, failed))} (rerun to continue: finished "
                         "cells are reused)")  # fmt: skip


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
