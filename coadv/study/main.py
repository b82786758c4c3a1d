"""``coadv study``: the translation study from a preset (``configs/study/<name>.yaml``), and its validation search.

    coadv study --preset cpu                                  # M <-> MM and M <-> USPS, 3 methods x 4 seeds, 2 cores
    coadv study --preset gpu --out runs/study_gpu             # paper scale, one GPU
    coadv study --preset cpu --methods accr --pairs m2mm --seeds 0 1 2 --variants configs/ablations/cr_reduce/*.yaml

Protocol (fixed budget, paired): every cell is one ordinary `coadv fit` run of
`configs/translation/method/<method>.yaml` + `configs/translation/direction/<pair>.yaml` (+ an ablation fragment, +
the preset's `configs` fragments and `flags`) for the same number of steps, LR constant then linearly decaying, no
early stopping and no checkpoint selection: the cell is evaluated at its last step. A seed fixes `seed_everything`
and `data.seed`, so every method of a seed sees the same batches in the same order and starts from the same nets
where the architectures agree. One CycleGAN trains both generators, so a cell gives both directions of its pair.
Metrics (`lightning_modules.translation_metrics`) on the test splits: train-on-translated / test-on-real-target,
target judge, joint judge, KID / FID, next to reference rows computed once per pair. Tables (`coadv.study.tables`):
mean ± std per method, paired differences against CycleGAN with a 95 % Student-t interval over seeds, and a verdict
per metric and direction.

A finished cell has `metrics.json` and is skipped on the next start; an interrupted cell resumes from its last
checkpoint. Tables are rebuilt from the cells' files every time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from callbacks.markdown import markdown_table
from coadv.constants import CONFIGS, DIRECTIONS, METHODS, config_path, translation_files
from coadv.progress import minutes, quiet_lightning, summary
from coadv.study import cells, evaluation, report
from coadv.study.cells import cell_name, finished_records, pair_references, run_workers
from coadv.study.tables import SEARCHED


def _check(kind: str, names: list[str], valid) -> None:
    bad = [n for n in names if n not in valid]
    if bad:
        raise SystemExit(f"unknown {kind} {', '.join(map(repr, bad))}; valid {kind}s: {', '.join(valid)}")


def load_preset(name_or_path: str) -> dict:
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIGS / "study" / f"{name_or_path}.yaml"
    if not path.is_file():
        valid = sorted(p.stem for p in (CONFIGS / "study").glob("*.yaml"))
        raise SystemExit(f"study preset {name_or_path!r} not found ({path}); valid presets: {', '.join(valid)}")
    return yaml.safe_load(path.read_text())


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line, checked (the preset read into ``preset_config``); nothing runs."""
    p = argparse.ArgumentParser(
        prog="coadv study", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="cpu", help="configs/study/<name>.yaml or a path")
    p.add_argument("--methods", nargs="+", help=f"subset of {', '.join(METHODS)} (default: the preset's)")
    p.add_argument(
        "--pairs",
        nargs="+",
        help=f"domain pairs, each trained both ways ({', '.join(DIRECTIONS)}; default: the preset's)",
    )
    p.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the preset's)")
    p.add_argument("--variants", nargs="+", type=Path, help="ablation config fragments, each run as its own variant")
    p.add_argument("--out", type=Path, help="output folder (default: runs/study_<preset>)")
    p.add_argument("--tables-only", action="store_true", help="rebuild the tables from the finished cells only")
    p.add_argument(
        "--search",
        action="store_true",
        help="the preset's hyperparameter search instead: each method's "
        "`search` fragments at its `search_seeds`, scored on validation images (never test)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="cells trained at once, each in its own 1-thread process "
        "(2 on 2 cores: the cpu preset's cells are too small to use 2 threads well)",
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)  # "i/N": the i-th of N --jobs processes (no tables)
    args = p.parse_args(argv)
    if args.jobs < 1:
        raise SystemExit(f"--jobs {args.jobs}: must be at least 1")
    preset = load_preset(args.preset)
    args.preset_config = preset
    if not args.search:
        _check("method", args.methods or preset["methods"], METHODS)
        _check("pair", args.pairs or preset["pairs"], DIRECTIONS)
    for variant in args.variants or []:
        if not variant.is_file():
            raise SystemExit(f"ablation variant {str(variant)!r} does not exist")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    raw = list(sys.argv[2:] if argv is None else argv)
    args = parse(raw)
    preset = args.preset_config
    if args.search:
        return search(preset, args)
    methods = args.methods or preset["methods"]
    pairs = args.pairs or preset["pairs"]
    seeds = args.seeds if args.seeds is not None else preset["seeds"]
    out = args.out or Path("runs") / f"study_{Path(args.preset).stem}"
    out.mkdir(parents=True, exist_ok=True)
    svhn = preset.get("svhn", "svhn")
    start = time.time()
    # seed-major: the cells finished at any moment are whole paired sets (every method of a seed)
    todo = [
        (method, pair, seed, variant)
        for variant in (args.variants or [None])
        for pair in pairs
        for seed in seeds
        for method in methods
    ]
    with quiet_lightning():
        if args.worker:  # the parent built the classifiers and references
            index, count = map(int, args.worker.split("/"))
            preset["_joint"] = {
                pair: json.loads((out / "references" / f"{pair}.json").read_text())["joint_judge"] for pair in pairs
            }
            cells.run_cells(todo[index::count], preset, out)
            return []
        if args.tables_only:
            found = [out / "cells" / cell_name(*cell) / "metrics.json" for cell in todo]
            records = [json.loads(f.read_text()) for f in found if f.is_file()]
            reused = 0
            references = [json.loads(f.read_text()) for f in sorted((out / "references").glob("*.json"))]
        else:
            domains = {d for pair in pairs for d in DIRECTIONS[pair]}
            for domain in sorted(domains - {"svhn"} | ({svhn} if "svhn" in domains else set())):
                evaluation.ensure_classifier(domain)
            references = [pair_references(pair, preset, out) for pair in pairs]
            preset["_joint"] = {r["pair"]: r["joint_judge"] for r in references}
            if args.jobs > 1:
                before = sum((out / "cells" / cell_name(*c) / "metrics.json").is_file() for c in todo)
                run_workers(raw, args.jobs, out)
            records, reused = cells.run_cells(todo, preset, out)  # with --jobs: every cell finished, read back
            reused = before if args.jobs > 1 else reused
            # the tables cover every pair in the folder: its references too, not only this call's pairs
            references = [json.loads(f.read_text()) for f in sorted((out / "references").glob("*.json"))]
    # the tables hold every finished cell of the folder (base and ablation variants alike), not only this call's
    finished = finished_records(out)
    report.write(finished + searched_records(finished, out), references, out, preset=args.preset, svhn_name=svhn)
    print((out / "results.md").read_text())
    print(
        summary(
            f"coadv study --preset {args.preset}",
            [
                (
                    "cells",
                    f"{len(records)} of {len(todo)} ("
                    + (
                        "finished cells read, none run"
                        if args.tables_only
                        else f"{len(records) - reused} run now, {reused} reused"
                    )
                    + f") in {minutes(time.time() - start)}",
                ),
                ("tables", f"{out / 'results.md'}, {out / 'cells.csv'}, {out / 'results.png'}"),
                ("cell runs", f"{out / 'cells'}/<variant>/<method>_<pair>/seed<n>/ (config.yaml, csv/, checkpoints/)"),
            ],
        )
    )
    return records


def leaves_base(fragment: str, method: str, pair: str) -> bool:
    """Whether a config fragment only restates values the method's and the pair's configs already have (the search
    point equal to the base cells, e.g. lambda 10)."""

    def flat(tree: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in tree.items():
            out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return out

    mine = flat(yaml.safe_load(config_path(fragment).read_text()) or {})
    base = {}
    for path in translation_files(method, pair):
        base.update(flat(yaml.safe_load(path.read_text()) or {}))
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
    chosen = json.loads(path.read_text())
    copies = []
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
        copies += [{**r, "variant": SEARCHED, "searched_from": r["variant"]} for r in mine]
    return copies


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
    todo = [
        (m, pair, seed, config_path(f))
        for m in methods
        for f in grid[m]
        for pair in pairs
        for seed in preset.get("search_seeds", [100])
    ]
    with quiet_lightning():
        if preset.get("stability"):
            main_out = out.parent
            preset["_joint"] = {pair: pair_references(pair, preset, main_out)["joint_judge"] for pair in pairs}
        records, _ = cells.run_cells(todo, preset, out, evaluate_on="val")
    chosen: dict[str, dict[str, str]] = {}
    rows = []
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
            rows += [
                [METHODS[method], pair, f"`{f}`", f"{v:.3f}", "yes" if f == best else ""] for f, v in score.items()
            ]
    header = ["method", "pair", "fragment", "validation train-on-translated (mean of both directions, seeds)", "chosen"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "search.md").write_text(markdown_table(header, rows))
    earlier = json.loads((out / "search.json").read_text()) if (out / "search.json").is_file() else {}
    for method, per_pair in chosen.items():  # a search of some methods or pairs keeps the others' choices
        earlier.setdefault(method, {}).update(per_pair)
    (out / "search.json").write_text(json.dumps(earlier, indent=1) + "\n")
    print((out / "search.md").read_text())
    return records
