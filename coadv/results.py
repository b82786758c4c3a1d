"""Study results: mean ± std tables (Markdown, CSV), a bar plot (PNG) and a W&B table, from per-cell records.

Every number is a test number of the checkpoint chosen on validation (each record's ``selected_on``)."""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from pathlib import Path

from coadv.constants import ARROWS, DIRECTIONS
from coadv.constants import METHODS as NAMES


def direction_label(direction: str, svhn_name: str = "svhn") -> str:
    a, b = (ARROWS[d] for d in DIRECTIONS[direction])
    star = "*" if svhn_name != "svhn" else ""
    return f"{a}{star if a == 'S' else ''}→{b}{star if b == 'S' else ''}"


def reverse(direction: str) -> str:
    """The direction with the domains swapped (``m2mm`` -> ``mm2m``)."""
    a, b = DIRECTIONS[direction]
    return next(d for d, pair in DIRECTIONS.items() if pair == (b, a))


def both_ways(records: list[dict]) -> list[dict]:
    """Each A->B record plus its B->A twin: one CycleGAN trains both generators, so a cell's F (``acc_b2a``,
    ``fid_a``) is a B->A result of the same run and checkpoint (marked ``from_cell``)."""
    out = []
    for r in records:
        twin = {**r, "direction": reverse(r["direction"]), "from_cell": r["direction"]}
        for x, y in (("acc_a2b", "acc_b2a"), ("fid_b", "fid_a"), ("base_a2b", "base_b2a")):
            if x in r or y in r:
                twin[x], twin[y] = r.get(y), r.get(x)
        out += [r, {k: v for k, v in twin.items() if v is not None}]
    return out


def aggregate(records: list[dict], key: str) -> dict[tuple[str, str, str], tuple[float, float, int]]:
    """(variant, method, direction) -> (mean, std, n) of ``key`` over seeds (std 0 for one seed)."""
    groups: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in records:
        if key in r:
            groups[(r["variant"], r["method"], r["direction"])].append(r[key])
    return {k: (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v)) for k, v in groups.items()}


def _ordered(records: list[dict], field: str) -> list[str]:
    return list(dict.fromkeys(r[field] for r in records))


def markdown(records: list[dict], key: str, title: str, svhn_name: str, digits: int, baseline: str = "") -> str:
    """Mean ± std over seeds per (variant, method) row and direction column; ``baseline`` (a record key such as
    ``base_a2b``) adds a "no translation" row: its mean over the direction's cells (the same test images and judges
    in every cell, so one value)."""
    agg = aggregate(records, key)
    most = max((n for _, _, n in agg.values()), default=0)
    directions = _ordered(records, "direction")
    lines = [
        f"**{title}**",
        "",
        "| variant | method | " + " | ".join(direction_label(d, svhn_name) for d in directions) + " |",
    ]
    lines.append("|---|---|" + "---|" * len(directions))
    for variant in _ordered(records, "variant"):
        for method in _ordered(records, "method"):
            cells = []
            for d in directions:
                mean, std, n = agg.get((variant, method, d), (float("nan"), 0.0, 0))
                fewer = f" (n = {n})" if 0 < n < most else ""  # a cell with fewer seeds than the table's others
                cells.append(f"{mean:.{digits}f} ± {std:.{digits}f}{fewer}" if n else "—")
            lines.append(f"| {variant} | {NAMES.get(method, method)} | " + " | ".join(cells) + " |")
    base = {d: mean for (_, _, d), (mean, _, _) in aggregate(records, baseline).items()} if baseline else {}
    if base:
        cells = [f"{base[d]:.{digits}f}" if d in base else "—" for d in directions]
        lines.append(
            "| — | no translation (target classifier on untranslated source images) | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def write_csv(records: list[dict], out: Path) -> None:
    keys = ["variant", "method", "direction", "from_cell", "seed", "acc_a2b", "acc_b2a", "base_a2b", "base_b2a", "fid_a",
            "fid_b", "selected_on", "selected_epoch", "val_score", "epochs_run", "max_epochs", "wall_s"]  # fmt: skip
    with open(out / "cells.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    acc, fid = aggregate(records, "acc_a2b"), aggregate(records, "fid_b")
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["variant", "method", "direction", "n_seeds", "test_acc_a2b_mean", "test_acc_a2b_std",
                         "test_fid_b_mean", "test_fid_b_std"])  # fmt: skip
        for (variant, method, direction), (mean, std, n) in acc.items():
            fm, fs, _ = fid.get((variant, method, direction), (float("nan"), float("nan"), 0))
            writer.writerow([variant, method, direction, n, f"{mean:.4f}", f"{std:.4f}", f"{fm:.4f}", f"{fs:.4f}"])


def read_curve(cell: Path, key: str = "val/acc_mean") -> list[tuple[int, float]]:
    """(epoch, value) of ``key`` from a cell's CSV logs, over every launch of the cell (a resumed cell logs to a new
    version folder; a later launch's value of an epoch replaces the earlier one)."""
    points: dict[int, float] = {}
    for log in sorted(cell.glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1])):
        with open(log, newline="") as f:
            for row in csv.DictReader(f):
                if row.get(key) and row.get("epoch"):
                    points[int(float(row["epoch"]))] = float(row[key])
    return sorted(points.items())


def curves_plot(records: list[dict], cells: Path, path: Path, key: str = "val/acc_mean") -> None:
    """Every cell's validation curve (one line per seed, a colour per method; the chosen epoch marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in records if "from_cell" not in r]
    panels = list(dict.fromkeys((r["variant"], r["direction"]) for r in records))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    colours = {m: f"C{i}" for i, m in enumerate(dict.fromkeys(r["method"] for r in records))}
    for ax, (variant, direction) in zip(axes[0], panels):
        for r in records:
            if (r["variant"], r["direction"]) != (variant, direction):
                continue
            curve = read_curve(cells / variant / f"{r['method']}_{direction}" / f"seed{r['seed']}", key)
            if not curve:
                continue
            epochs, values = zip(*curve)
            label = f"{NAMES.get(r['method'], r['method'])} seed {r['seed']}"
            ax.plot([e + 1 for e in epochs], values, color=colours[r["method"]], lw=1, marker=".", label=label)
            chosen = dict(curve).get(r.get("selected_epoch"))
            if chosen is not None:
                ax.plot(r["selected_epoch"] + 1, chosen, "o", mfc="none", color=colours[r["method"]], ms=8)
        ax.set_title(f"{variant} {direction_label(direction)}: {key} (o = chosen)", fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def bar_plot(records: list[dict], path: Path, svhn_name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agg = aggregate(records, "acc_a2b")
    directions, groups = (
        _ordered(records, "direction"),
        [(v, m) for v in _ordered(records, "variant") for m in _ordered(records, "method")],
    )
    width = 0.8 / len(groups)
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(directions), 3.6))
    for i, (variant, method) in enumerate(groups):
        stats = [agg.get((variant, method, d), (0.0, 0.0, 0)) for d in directions]
        label = NAMES.get(method, method) + ("" if variant == "base" else f" [{variant}]")
        xs = [j + (i - (len(groups) - 1) / 2) * width for j in range(len(directions))]
        ax.bar(xs, [s[0] for s in stats], width, yerr=[s[1] for s in stats], capsize=3, label=label)
    ax.set_xticks(range(len(directions)), [direction_label(d, svhn_name) for d in directions])
    ax.set_ylabel("translated test accuracy A→B")
    ax.set_ylim(0, 1)
    ax.axhline(0.1, color="grey", lw=0.8, ls=":")
    ax.legend(fontsize=7, ncol=min(3, len(groups)))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def wandb_table(records: list[dict], out: Path, plot: Path, preset: str) -> str:
    """The cells table and the plot in one W&B run (job type ``study``); returns where the run is, or why none."""
    from coadv.tracking import finish_previous_run, wandb_environment

    wandb_environment()  # every cell may have been reused: no CLI run set the mode in this process
    finish_previous_run()  # the last cell's run
    import wandb

    keys = ["variant", "method", "direction", "seed", "acc_a2b", "acc_b2a", "fid_a", "fid_b", "selected_epoch"]
    preset = Path(preset).stem  # a preset given as a path: its name
    config = {"preset": preset, **{f"{k}s": sorted({str(r[k]) for r in records}) for k in keys[:4]}}
    run = wandb.init(project="coadv", dir=str(out), job_type="study", name=f"study {preset}", group="study",
                     tags=["study", preset], config=config)  # fmt: skip
    run.log({"study/cells": wandb.Table(columns=keys, data=[[r.get(k) for k in keys] for r in records]),
             "study/accuracy": wandb.Image(str(plot))})  # fmt: skip
    mode, folder = run.settings.mode, run.settings.sync_dir
    run.finish()
    if mode == "disabled":
        return "disabled (WANDB_MODE=disabled)"
    return f"{folder}" + (f" (offline; upload: wandb sync {folder})" if mode in ("offline", "dryrun") else "")


def stopping_note(records: list[dict]) -> str:
    """How the cells ended: stopped by early stopping before the epoch cap, or at the cap."""
    timed = [r for r in records if "epochs_run" in r and "from_cell" not in r]
    if not timed:
        return ""
    capped = [r for r in timed if r["epochs_run"] >= r["max_epochs"]]
    runs = ", ".join(str(r["epochs_run"]) for r in timed)
    return (f" Epochs trained per cell: {runs}; {len(timed) - len(capped)} of {len(timed)} cells stopped when "
            f"validation accuracy plateaued, {len(capped)} reached the epoch cap.")  # fmt: skip


def write(records: list[dict], out: Path, svhn_name: str = "svhn", preset: str = "", two_way: bool = False) -> str:
    """Tables, plots (bars, validation curves) and the W&B table run of a study; returns where that run is
    (:func:`wandb_table`). ``two_way``: each cell also fills the reverse direction's column with its F. Records
    holding ``base_a2b`` add a no-translation row to the accuracy table."""
    if (out / "cells").is_dir():
        curves_plot(records, out / "cells", out / "curves.png")
    stopping = stopping_note(records)
    if two_way:
        records = both_ways(records)
    seeds = sorted({r["seed"] for r in records})
    chosen_on = ", ".join(sorted({r.get("selected_on", "?") for r in records}))
    note = (
        f"Preset `{preset}`, seeds {seeds}; accuracy of the target-domain classifier on translated test images (A→B). "
        f"Test numbers of each run's checkpoint chosen on validation (`{chosen_on}`, held out of training), not a "
        "maximum over epochs of test numbers."
    )
    if svhn_name != "svhn" and any("svhn" in DIRECTIONS[r["direction"]] for r in records):
        note += f" S* = `{svhn_name}` standing in for SVHN (no offline SVHN copy)."
    note += stopping
    if two_way:
        twins = sorted({direction_label(r["direction"], svhn_name) for r in records if "from_cell" in r})
        note += (f" Columns {', '.join(twins)}: the reverse generator F of the same cells (one CycleGAN trains both "
                 "directions; same runs, same chosen checkpoints).")  # fmt: skip
    text = "\n\n".join([
        note,
        markdown(records, "acc_a2b", "Translated test accuracy, checkpoint chosen on validation (mean ± std over "
                 "seeds)", svhn_name, 3, "base_a2b"),  # fmt: skip
        markdown(records, "fid_b", "Test FID on the target domain, classifier features, same checkpoints (mean ± std)",
                 svhn_name, 1),  # fmt: skip
    ])  # fmt: skip
    (out / "results.md").write_text(text + "\n")
    write_csv(records, out)
    bar_plot(records, out / "results.png", svhn_name)
    return wandb_table(records, out, out / "results.png", preset)
