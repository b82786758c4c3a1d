"""``results.md`` and ``cells.csv`` of a study folder, from its cells' records and its pairs' references."""

from __future__ import annotations

import csv
from pathlib import Path

from coadv.constants import DIRECTIONS
from coadv.constants import METHODS as NAMES
from coadv.study.figures import plot, robustness_plot, stability_plot
from coadv.study.stability import robustness_tables, stability_tables
from coadv.study.tables import (
    METRICS,
    SEARCHED,
    SIDES,
    ablation_table,
    direction_label,
    direction_table,
    no_translation_table,
    verdict_table,
)


def informativeness(reference: dict, pair: str, svhn_name: str) -> str:
    notes = []
    for side in SIDES:
        label = direction_label(pair, side, svhn_name)
        src = reference.get(f"judge_src_{side}")
        own = reference.get(f"judge_own_{side}")
        if src is None:
            continue
        state = "informative" if reference.get(f"informative_{side}") else "**uninformative**"
        notes.append(
            f"{label}: the target judge reads untranslated source at {src:.3f} and its own domain at {own:.3f}: {state}"
        )
    probes = []
    for side in SIDES:
        src = reference.get(f"tot_src_{side}")
        oracle = reference.get(f"tot_oracle_{side}")
        if src is None or f"tot_informative_{side}" not in reference:
            continue
        state = "informative" if reference[f"tot_informative_{side}"] else "**uninformative**"
        probes.append(
            f"{direction_label(pair, side, svhn_name)}: source only {src:.3f}, target oracle {oracle:.3f}: {state}"
        )
    text = "Target judge: " + "; ".join(notes) + "." if notes else ""
    if probes:
        text += (" " if text else "") + "Train on translated: " + "; ".join(probes) + "."
    return text


def write_csv(records: list[dict], out: Path) -> None:
    records = [r for r in records if r["variant"] != SEARCHED]  # copies of cells listed already
    keys = ["variant", "method", "pair", "seed", "steps", "train_s", "wall_s"]
    keys += [f"{k}_{s}" for s in SIDES for k, _, _ in METRICS]
    with open(out / "cells.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)


def pair_section(mine: list[dict], reference: dict | None, pair: str, svhn_name: str) -> list[str]:
    """The parts of ``results.md`` for one pair: references, tables, verdicts, ablations, stability, robustness."""
    parts = []
    parts.append(f"### {direction_label(pair, 'a2b', svhn_name).replace('→', ' ↔ ')}")
    if reference:
        parts.append(informativeness(reference, pair, svhn_name))
    for side in SIDES:
        parts.append(
            f"**{direction_label(pair, side, svhn_name)}** (mean ± std over seeds)\n\n"
            + direction_table(mine, reference, pair, side, svhn_name)
        )
    sources = sorted({(r["method"], r["searched_from"]) for r in mine if r["variant"] == SEARCHED})
    if sources:
        parts.append(
            f"*{SEARCHED}* rows: each method at the weights its validation search chose: "
            + ", ".join(f"{NAMES.get(m, m)} from `{v}`" for m, v in sources)
            + "."
        )
    if mine:
        parts.append("**Paired differences and verdicts**\n\n" + verdict_table(mine, reference, pair, svhn_name))
    nothing = no_translation_table(mine, reference, pair, svhn_name) if mine and reference else ""
    if nothing:
        parts.append("**Against no translation** (does translating help at all?)\n\n" + nothing)
    ablation = ablation_table(mine, pair, svhn_name)
    if ablation:
        parts.append(
            "**Ablations** (each variant − the same method at its base configuration, same seeds)\n\n" + ablation
        )
    stability = stability_tables(mine, reference, pair, svhn_name)
    if stability:
        parts.append("**Early stability** (figure: `stability.png`)\n\n" + stability)
    robustness = robustness_tables(mine, reference, pair, svhn_name)
    if robustness:
        parts.append("**Robustness to corrupted inputs** (figure: `robustness.png`)\n\n" + robustness)
    return parts


def write(records: list[dict], references: list[dict], out: Path, preset: str = "", svhn_name: str = "svhn") -> None:
    """``results.md`` (tables and verdicts per pair) and ``cells.csv`` from the cells' records."""
    refs = {r["pair"]: r for r in references}
    steps = sorted({r.get("steps") for r in records if r.get("steps") is not None})
    seeds = sorted({r["seed"] for r in records})
    parts = [
        f"Preset `{preset}`, seeds {seeds}, {', '.join(map(str, steps)) or '?'} training steps per cell (fixed budget, "
        "last step, no selection). Test images; paired differences over seeds (same data order and start nets per "
        "seed) with a 95 % Student-t interval; verdict: holds (interval on the better side of 0), does not hold "
        "(on the worse side), inconclusive (contains 0)."
    ]
    if svhn_name != "svhn" and any("svhn" in DIRECTIONS[r["pair"]] for r in records):
        parts[0] += f" S* = `{svhn_name}` standing in for SVHN (no offline SVHN copy)."
    for pair in dict.fromkeys([*(r["pair"] for r in records), *refs]):
        parts += pair_section([r for r in records if r["pair"] == pair], refs.get(pair), pair, svhn_name)
    (out / "results.md").write_text("\n\n".join(p for p in parts if p) + "\n")
    write_csv(records, out)
    plot(records, refs, out / "results.png", svhn_name)
    stability_plot(records, out / "stability.png", svhn_name)
    robustness_plot(records, refs, out / "robustness.png", svhn_name)
