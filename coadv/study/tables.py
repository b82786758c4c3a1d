"""Study tables and a figure: per direction, mean ± std per method next to reference rows; paired differences against CycleGAN
(and, for ablation variants, against the base configuration) with a 95 % Student-t interval over seeds, and a
verdict per metric and direction. Every number is measured on test images at the last step of a fixed budget."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

from coadv.constants import ARROWS, CONFIGS, DIRECTIONS
from coadv.constants import METHODS as NAMES

# (key, column title, higher is better)
METRICS = (
    ("tot", "train on translated → real target ↑", True),
    ("judge", "target judge ↑", True),
    ("joint", "joint judge: (target, digit) ↑", True),
    ("real", "joint judge: read as target ↑", True),
    ("kid", "KID ↓", False),
    ("fid", "FID ↓", False),
)
CLAIMS = (("accr", "cyclegan"), ("cr_cyclegan", "cyclegan"), ("accr", "cr_cyclegan"))
SIDES = ("a2b", "b2a")
# ACCR with cross-network terms: these variants join the three methods in the stability and robustness tables
CROSS = frozenset(p.stem for p in (CONFIGS / "ablations" / "cross").glob("*.yaml"))
# each method at the weights its validation search chose (``coadv study --search``): a variant of copied cells
SEARCHED = "λ searched"


def arm(record: dict) -> str:
    """A cell's row in the stability / robustness tables: its method, or ``method [variant]`` for a cross variant."""
    return record["method"] if record["variant"] == "base" else f"{record['method']} [{record['variant']}]"


def arm_name(key: str) -> str:
    method, _, variant = key.partition(" ")
    return NAMES.get(method, method) + (f" {variant}" if variant else "")


def arms(records: list[dict], needs: str) -> list[dict]:
    """The base cells and the cross-variant cells that hold ``needs`` (``"curve"``: both curves with two points or
    more; ``"rob"``: every corruption, severity and side)."""
    from nets.corruptions import KINDS

    def complete(r: dict) -> bool:
        if needs == "curve":
            return all(len(r.get(f"curve_{side}") or []) >= 2 for side in SIDES)
        keys = [f"rob_{k}_{s}_{side}" for k in KINDS for s in (1, 2, 3) for side in SIDES]
        return all(k in r for k in [*keys, *(f"rob_{x}_{side}" for x in ("clean", "mean") for side in SIDES)])

    def joins(r: dict) -> bool:  # CycleGAN's searched copies are its base cells
        return r["variant"] in ("base", *CROSS) or (r["variant"] == SEARCHED and r["method"] != "cyclegan")

    return [r for r in records if joins(r) and complete(r)]


def baselines(method: str) -> list[str]:
    """What an arm is paired with: CycleGAN, and for a cross variant also its own method without the terms."""
    return ["cyclegan"] + ([method.split(" ")[0]] if " " in method else [])


def direction_label(pair: str, side: str, svhn_name: str = "svhn") -> str:
    a, b = (ARROWS.get(d, d) for d in DIRECTIONS[pair])
    star = "*" if svhn_name != "svhn" else ""
    a, b = (x + (star if x == "S" else "") for x in (a, b))
    return f"{a}→{b}" if side == "a2b" else f"{b}→{a}"


def t_interval(diffs: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean of paired differences and its two-sided Student-t interval (``nan`` bounds for fewer than 2 pairs)."""
    from scipy.stats import t

    n = len(diffs)
    mean = statistics.fmean(diffs) if diffs else math.nan
    if n < 2:
        return mean, math.nan, math.nan
    half = t.ppf(0.5 + level / 2, n - 1) * statistics.stdev(diffs) / math.sqrt(n)
    return mean, mean - half, mean + half


def verdict(low: float, high: float, higher_is_better: bool) -> str:
    """``holds`` when the interval lies on the better side of 0, ``does not hold`` when it lies on the worse side,
    ``inconclusive`` when it contains 0 (or there are too few seeds for one)."""
    if math.isnan(low):
        return "inconclusive (fewer than 2 seeds)"
    better, worse = (low > 0, high < 0) if higher_is_better else (high < 0, low > 0)
    return "holds" if better else "does not hold" if worse else "inconclusive"


def by_seed(records: list[dict], variant: str, method: str, pair: str, key: str) -> dict[int, float]:
    return {r["seed"]: r[key] for r in records
            if (r["variant"], r["method"], r["pair"]) == (variant, method, pair) and key in r}  # fmt: skip


def mean_std(values: list[float], digits: int) -> str:
    if not values:
        return "—"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {std:.{digits}f}"


def _digits(key: str) -> int:
    return 2 if key == "kid" else 1 if key == "fid" else 3


def _ordered(records: list[dict], field: str) -> list[str]:
    return list(dict.fromkeys(r[field] for r in records))


def direction_table(records: list[dict], reference: dict | None, pair: str, side: str, svhn_name: str) -> str:
    """Mean ± std of every metric per (variant, method), then the reference rows."""
    lines = ["| variant | method | n | " + " | ".join(title for _, title, _ in METRICS) + " |",
             "|---|---|---|" + "---|" * len(METRICS)]  # fmt: skip
    for variant in _ordered(records, "variant"):
        for method in _ordered(records, "method"):
            cols = [list(by_seed(records, variant, method, pair, f"{k}_{side}").values()) for k, _, _ in METRICS]
            if not cols[0]:
                continue
            cells = [mean_std(v, _digits(k)) for v, (k, _, _) in zip(cols, METRICS)]
            lines.append(f"| {variant} | {NAMES.get(method, method)} | {len(cols[0])} | " + " | ".join(cells) + " |")
    if reference:

        def row(name: str, keys: list[str]) -> str:
            cells = [f"{reference[f'{k}_{side}']:.{_digits(m)}f}" if f"{k}_{side}" in reference else "—"
                     for k, (m, _, _) in zip(keys, METRICS)]  # fmt: skip
            return f"| — | {name} | — | " + " | ".join(cells) + " |"

        lines.append(row("no translation (source images as they are)", [f"{k}_src" for k, _, _ in METRICS]))
        lines.append(row("target domain itself (oracle / own test / train vs test)",
                         ["tot_oracle", "judge_own", "joint_own", "real_own", "kid_train", "fid_train"]))  # fmt: skip
    return "\n".join(lines)


def comparisons(records: list[dict]) -> list[tuple[str, str, str, str]]:
    """(variant, method, versus variant, versus method) pairs to difference: the claims within every variant, and
    each non-base variant's method against the same method in ``base``."""
    out = []
    present = {(r["variant"], r["method"]) for r in records}
    for variant in _ordered(records, "variant"):
        out += [(variant, m, variant, v) for m, v in CLAIMS if {(variant, m), (variant, v)} <= present]
        if variant != "base":
            out += [
                (variant, m, "base", m)
                for m in _ordered(records, "method")
                if {(variant, m), ("base", m)} <= present and variant != SEARCHED  # its source variant's row already
            ]
    return out


def verdict_table(records: list[dict], reference: dict | None, pair: str, svhn_name: str) -> str:
    """Paired differences (same seed) per comparison and metric, both directions, with intervals and verdicts."""
    heads = [direction_label(pair, s, svhn_name) for s in SIDES]
    lines = ["| comparison | metric | " + " | ".join(heads) + " |", "|---|---|" + "---|" * len(SIDES)]
    for variant, method, vs_variant, vs_method in comparisons(records):
        name = f"{NAMES.get(method, method)} − {NAMES.get(vs_method, vs_method)}"
        if variant != "base" or vs_variant != "base":
            name = f"{NAMES.get(method, method)} [{variant}] − {NAMES.get(vs_method, vs_method)} [{vs_variant}]"
        for key, title, higher in METRICS:
            cells = []
            for side in SIDES:
                mine = by_seed(records, variant, method, pair, f"{key}_{side}")
                theirs = by_seed(records, vs_variant, vs_method, pair, f"{key}_{side}")
                seeds = sorted(mine.keys() & theirs.keys())
                mean, low, high = t_interval([mine[s] - theirs[s] for s in seeds])
                if not seeds:
                    cells.append("—")
                    continue
                d = _digits(key) + (1 if key != "fid" else 0)
                text = f"{mean:+.{d}f} [{low:+.{d}f}, {high:+.{d}f}], n = {len(seeds)}: {verdict(low, high, higher)}"
                text += flag(records, reference, pair, key, side)
                cells.append(text)
            lines.append(f"| {name} | {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def flag(records: list[dict], reference: dict | None, pair: str, key: str, side: str) -> str:
    """A note for a metric that cannot tell the arms apart in this direction: the target judge or the train-on-
    translated probe uninformative (no translation scores as well, ``informativeness``), or "read as target"
    saturated (every arm within 0.01 of the target test images' own rate)."""
    if not reference:
        return ""
    if key == "judge" and not reference.get(f"informative_{side}", 1.0):
        return " (judge uninformative here)"
    if key == "tot" and not reference.get(f"tot_informative_{side}", 1.0):
        return " (probe uninformative here)"
    own = reference.get(f"real_own_{side}")
    if key == "real" and own is not None:
        means = [statistics.fmean(v) for v in _arm_values(records, pair, f"real_{side}") if v]
        if means and min(means) >= own - 0.01:
            return " (saturated: every arm at the target's own level)"
    return ""


def _arm_values(records: list[dict], pair: str, key: str) -> list[list[float]]:
    return [list(by_seed(records, v, m, pair, key).values())
            for v in _ordered(records, "variant") for m in _ordered(records, "method")]  # fmt: skip


# metrics on which "better than doing nothing" is a claim: untranslated images read as the source domain, so the
# joint judge, "read as target", KID and FID of any translation beat them trivially
AGAINST_NOTHING = ("tot", "judge")


def no_translation_table(records: list[dict], reference: dict, pair: str, svhn_name: str) -> str:
    """Each method (base and searched weights) against no translation: mean over seeds minus the no-translation
    value, with the Student-t interval over seeds (the no-translation value is taken as fixed: its own sampling
    noise is not in the interval), per informative metric and direction."""
    heads = [direction_label(pair, s, svhn_name) for s in SIDES]
    lines = ["| method − no translation | metric | " + " | ".join(heads) + " |", "|---|---|" + "---|" * len(SIDES)]
    for variant in [v for v in ("base", SEARCHED) if v in _ordered(records, "variant")]:
        for method in _ordered(records, "method"):
            if variant == SEARCHED and method == "cyclegan":
                continue
            name = NAMES.get(method, method) + (f" [{variant}]" if variant != "base" else "")
            for key, title, higher in METRICS:
                if key not in AGAINST_NOTHING:
                    continue
                cells = []
                for side in SIDES:
                    mine, nothing = (
                        by_seed(records, variant, method, pair, f"{key}_{side}"),
                        reference.get(f"{key}_src_{side}"),
                    )
                    if not mine or nothing is None:
                        cells.append("—")
                        continue
                    mean, low, high = t_interval([v - nothing for v in mine.values()])
                    cells.append(f"{mean:+.4f} [{low:+.4f}, {high:+.4f}], n = {len(mine)}: {verdict(low, high, higher)}"
                                 + flag(records, reference, pair, key, side))  # fmt: skip
                if any(c != "—" for c in cells):
                    lines.append(f"| {name} | {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


ABLATION_METRICS = ("tot", "joint")  # per direction: the probe and the joint judge, informative both ways here


def ablation_table(records: list[dict], pair: str, svhn_name: str) -> str:
    """One row per ablation variant (not the searched weights): the variant − the same method in ``base`` over
    shared seeds, for the probe and the joint judge of both directions, with the 95 % t interval and verdict."""
    present = {(r["variant"], r["method"]) for r in records}
    rows = [(v, m) for v in _ordered(records, "variant") if v not in ("base", SEARCHED)
            for m in _ordered(records, "method") if {(v, m), ("base", m)} <= present]  # fmt: skip
    if not rows:
        return ""
    keys = [(k, side) for side in SIDES for k in ABLATION_METRICS]
    titles = {k: t.split(" ↑")[0] for k, t, _ in METRICS}
    lines = ["| variant | method | " + " | ".join(f"{direction_label(pair, side, svhn_name)} {titles[k]}"
                                               for k, side in keys) + " |",
             "|---|---|" + "---|" * len(keys)]  # fmt: skip
    for variant, method in rows:
        cells = []
        for k, side in keys:
            mine = by_seed(records, variant, method, pair, f"{k}_{side}")
            base = by_seed(records, "base", method, pair, f"{k}_{side}")
            seeds = sorted(mine.keys() & base.keys())
            mean, low, high = t_interval([mine[s] - base[s] for s in seeds])
            interval = f" [{low:+.3f}, {high:+.3f}]" if len(seeds) > 1 else ""
            cells.append("—" if not seeds else f"{mean:+.3f}{interval} n={len(seeds)}: {verdict(low, high, True)}")
        lines.append(f"| {variant} | {NAMES.get(method, method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def informativeness(reference: dict, pair: str, svhn_name: str) -> str:
    notes = []
    for side in SIDES:
        label = direction_label(pair, side, svhn_name)
        src, own = reference.get(f"judge_src_{side}"), reference.get(f"judge_own_{side}")
        if src is None:
            continue
        state = "informative" if reference.get(f"informative_{side}") else "**uninformative**"
        notes.append(f"{label}: the target judge reads untranslated source at {src:.3f} and its own domain at "
                     f"{own:.3f}: {state}")  # fmt: skip
    probes = []
    for side in SIDES:
        src, oracle = reference.get(f"tot_src_{side}"), reference.get(f"tot_oracle_{side}")
        if src is None or f"tot_informative_{side}" not in reference:
            continue
        state = "informative" if reference[f"tot_informative_{side}"] else "**uninformative**"
        probes.append(f"{direction_label(pair, side, svhn_name)}: source only {src:.3f}, target oracle "
                      f"{oracle:.3f}: {state}")  # fmt: skip
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


def plot(records: list[dict], refs: dict[str, dict], path: Path, svhn_name: str = "svhn", key: str = "tot") -> None:
    """One panel per direction: ``key`` per method (bar: mean, dots: seeds), with the no-translation (dashed) and
    target-oracle (dotted) reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = [r for r in records if r["variant"] == "base"]
    panels = [(pair, side) for pair in _ordered(base, "pair") for side in SIDES]
    if not panels:
        return
    methods = sorted(_ordered(base, "method"), key=lambda m: list(NAMES).index(m) if m in NAMES else len(NAMES))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.0), squeeze=False)
    for ax, (pair, side) in zip(axes[0], panels):
        for i, method in enumerate(methods):
            values = list(by_seed(base, "base", method, pair, f"{key}_{side}").values())
            if values:
                ax.bar(i, statistics.fmean(values), color=f"C{i}", alpha=0.6)
                ax.plot([i] * len(values), values, "k.", ms=4)
        ref = refs.get(pair, {})
        for name, style in ((f"{key}_src_{side}", "--"), (f"{key}_oracle_{side}", ":")):
            if name in ref:
                ax.axhline(ref[name], color="grey", ls=style, lw=1)
        ax.set_xticks(range(len(methods)), [NAMES.get(m, m) for m in methods], rotation=30, fontsize=7)
        ax.set_title(direction_label(pair, side, svhn_name), fontsize=9)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("train on translated → real target", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def pair_section(mine: list[dict], reference: dict | None, pair: str, svhn_name: str) -> list[str]:
    """The parts of ``results.md`` for one pair: references, tables, verdicts, ablations, stability, robustness."""
    parts = []
    parts.append(f"### {direction_label(pair, 'a2b', svhn_name).replace('→', ' ↔ ')}")
    if reference:
        parts.append(informativeness(reference, pair, svhn_name))
    for side in SIDES:
        parts.append(f"**{direction_label(pair, side, svhn_name)}** (mean ± std over seeds)\n\n"
                     + direction_table(mine, reference, pair, side, svhn_name))  # fmt: skip
    sources = sorted({(r["method"], r["searched_from"]) for r in mine if r["variant"] == SEARCHED})
    if sources:
        parts.append(f"*{SEARCHED}* rows: each method at the weights its validation search chose: "
                     + ", ".join(f"{NAMES.get(m, m)} from `{v}`" for m, v in sources) + ".")  # fmt: skip
    if mine:
        parts.append("**Paired differences and verdicts**\n\n" + verdict_table(mine, reference, pair, svhn_name))
    nothing = no_translation_table(mine, reference, pair, svhn_name) if mine and reference else ""
    if nothing:
        parts.append("**Against no translation** (does translating help at all?)\n\n" + nothing)
    ablation = ablation_table(mine, pair, svhn_name)
    if ablation:
        parts.append("**Ablations** (each variant − the same method at its base configuration, same seeds)\n\n"
                     + ablation)  # fmt: skip
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


STABILITY_STEPS = (100, 250, 500, 1000)  # batches at which the seed spread is reported


def _curve(record: dict, side: str) -> list[list[float]]:
    return record.get(f"curve_{side}") or []


def value_at(curve: list[list[float]], batch: int) -> float | None:
    return next((v for b, v in curve if b == batch), None)


def stability_tables(records: list[dict], reference: dict | None, pair: str, svhn_name: str) -> str:
    """Per direction: area under the joint-judge curve (mean ± std), the seed spread at fixed batches, collapses;
    then the paired AUC differences against CycleGAN (95 % t interval, verdict)."""
    from lightning_modules.translation_metrics import area_under_curve, collapsed

    base = arms(records, "curve")
    if not base:
        return ""
    parts = []
    methods = list(dict.fromkeys(map(arm, base)))
    for side in SIDES:
        steps = [b for b in STABILITY_STEPS if any(value_at(_curve(r, side), b) is not None for r in base)]
        floor = (reference or {}).get(f"joint_src_val_{side}")  # measured on the curves' validation images
        said = "no floor measured: collapses not counted" if floor is None else f"no translation reads {floor:.3f}"
        lines = [f"**{direction_label(pair, side, svhn_name)}**: joint judge (target, digit) on validation images "
                 f"during training; {said}",
                 "", "| method | n | area under the curve (mean level) | "
                 + " | ".join(f"spread (std) at {b}" for b in steps) + " | collapses |",
                 "|---|---|---|" + "---|" * len(steps) + "---|"]  # fmt: skip
        auc: dict[str, dict[int, float]] = {}
        for method in methods:
            runs = [r for r in base if arm(r) == method]
            auc[method] = {r["seed"]: area_under_curve(*zip(*_curve(r, side))) for r in runs}
            spread = []
            for b in steps:
                values = [v for r in runs if (v := value_at(_curve(r, side), b)) is not None]
                spread.append(f"{statistics.stdev(values):.3f}" if len(values) > 1 else "—")
            falls = "—" if floor is None else sum(collapsed([v for _, v in _curve(r, side)], floor) for r in runs)
            lines.append(f"| {arm_name(method)} | {len(runs)} | {mean_std(list(auc[method].values()), 3)} | "
                         + " | ".join(spread) + f" | {falls} of {len(runs)} |")  # fmt: skip
        for method in methods:
            for other in baselines(method):
                if method == other or other not in auc:
                    continue
                seeds = sorted(auc[method].keys() & auc[other].keys())
                mean, low, high = t_interval([auc[method][s] - auc[other][s] for s in seeds])
                lines.append(f"\n{arm_name(method)} − {arm_name(other)}, area under the curve: {mean:+.4f} "
                             f"[{low:+.4f}, {high:+.4f}], n = {len(seeds)}: {verdict(low, high, True)}")  # fmt: skip
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def robustness_tables(records: list[dict], reference: dict | None, pair: str, svhn_name: str) -> str:
    """Per direction: the joint judge's (target, digit) rate on translations of corrupted test images, clean and
    averaged per corruption and overall (mean ± std over seeds), the drop from clean to that mean (descriptive: no
    verdict, doing nothing would win it), the no-translation row, and paired differences of the mean against
    CycleGAN."""
    from nets.corruptions import KINDS

    base = arms(records, "rob")
    if not base:
        return ""
    parts = []
    methods = list(dict.fromkeys(map(arm, base)))
    for side in SIDES:
        head = ["clean", *KINDS, "mean over corruptions", "drop from clean"]
        lines = [f"**{direction_label(pair, side, svhn_name)}**: joint judge (target, digit) on G(corrupted source "
                 "test images), each corruption averaged over severities 1-3", "",
                 "| method | n | " + " | ".join(head) + " |", "|---|---|" + "---|" * len(head)]  # fmt: skip

        def columns(r: dict, side: str = side) -> list[float]:
            kinds = [statistics.fmean(r[f"rob_{k}_{s}_{side}"] for s in (1, 2, 3)) for k in KINDS]
            return [
                r[f"rob_clean_{side}"],
                *kinds,
                r[f"rob_mean_{side}"],
                r[f"rob_clean_{side}"] - r[f"rob_mean_{side}"],
            ]

        for method in methods:
            runs = [columns(r) for r in base if arm(r) == method]
            lines.append(f"| {arm_name(method)} | {len(runs)} | "
                         + " | ".join(mean_std(list(col), 3) for col in zip(*runs)) + " |")  # fmt: skip
        if reference and f"rob_mean_{side}" in reference:
            lines.append("| no translation | — | " + " | ".join(f"{v:.3f}" for v in columns(reference)) + " |")
        for method, other in ((m, o) for m in methods for o in baselines(m) if m != o):
            for what, at, higher in (("mean over corruptions", -2, True),):
                mine = {r["seed"]: columns(r)[at] for r in base if arm(r) == method}
                theirs = {r["seed"]: columns(r)[at] for r in base if arm(r) == other}
                seeds = sorted(mine.keys() & theirs.keys())
                if seeds:
                    mean, low, high = t_interval([mine[s] - theirs[s] for s in seeds])
                    lines.append(f"\n{arm_name(method)} − {arm_name(other)}, {what}: {mean:+.4f} [{low:+.4f}, "
                                 f"{high:+.4f}], n = {len(seeds)}: {verdict(low, high, higher)}")  # fmt: skip
        parts.append("\n".join(lines))
    parts.append("The verdicts use the mean over corruptions (as corruption benchmarks do). The drop from clean is "
                 "descriptive only: an arm with a low clean level has little to lose, so doing nothing (no "
                 "translation) would win it.")  # fmt: skip
    return "\n\n".join(parts)


def stability_plot(records: list[dict], path: Path, svhn_name: str = "svhn") -> None:
    """Per direction, the joint-judge curve's mean ± std band over seeds per method; per pair, the generator and
    discriminator losses (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    base = arms(records, "curve")
    pairs = _ordered(base, "pair")
    if not pairs:
        return
    fig, axes = plt.subplots(len(pairs), 4, figsize=(13, 2.8 * len(pairs)), squeeze=False)
    for row, pair in zip(axes, pairs):
        for i, method in enumerate(dict.fromkeys(map(arm, base))):
            runs = [r for r in base if (r["pair"], arm(r)) == (pair, method)]
            if not runs:
                continue
            for ax, key in zip(row, ("curve_a2b", "curve_b2a", "loss_g", "loss_d")):
                curves = [dict(map(tuple, r.get(key) or [])) for r in runs]
                batches = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
                if not batches:
                    continue
                values = np.array([[c[b] for b in batches] for c in curves])
                mean, std = values.mean(0), values.std(0)
                ax.plot(batches, mean, color=f"C{i}", lw=1.2, label=arm_name(method))
                ax.fill_between(batches, mean - std, mean + std, color=f"C{i}", alpha=0.2)
        titles = [direction_label(pair, "a2b", svhn_name), direction_label(pair, "b2a", svhn_name), "G loss", "D loss"]
        for ax, title in zip(row, titles):
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("batch", fontsize=8)
            ax.grid(alpha=0.3)
        row[0].set_ylabel("joint judge (target, digit)", fontsize=8)
        row[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def robustness_plot(records: list[dict], refs: dict[str, dict], path: Path, svhn_name: str = "svhn") -> None:
    """Per direction, the joint-judge rate against corruption severity (mean over corruptions and seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nets.corruptions import KINDS

    base = arms(records, "rob")
    panels = [(pair, side) for pair in _ordered(base, "pair") for side in SIDES]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 3.0), squeeze=False)
    for ax, (pair, side) in zip(axes[0], panels):

        def level(r: dict, s: int, side: str = side) -> float:
            if s == 0:
                return r[f"rob_clean_{side}"]
            return statistics.fmean(r[f"rob_{k}_{s}_{side}"] for k in KINDS)

        for i, method in enumerate(dict.fromkeys(map(arm, base))):
            runs = [r for r in base if (r["pair"], arm(r)) == (pair, method)]
            if runs:
                ax.plot(range(4), [statistics.fmean(level(r, s) for r in runs) for s in range(4)], "o-",
                        color=f"C{i}", label=arm_name(method), ms=3)  # fmt: skip
        ref = refs.get(pair)
        if ref and f"rob_mean_{side}" in ref:
            ax.plot(range(4), [level(ref, s) for s in range(4)], "k--", lw=1, label="no translation")
        ax.set_title(direction_label(pair, side, svhn_name), fontsize=9)
        ax.set_xlabel("severity", fontsize=8)
        ax.set_xticks(range(4))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("joint judge (target, digit)", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
