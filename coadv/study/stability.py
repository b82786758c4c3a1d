"""The study's early-stability and robustness tables: the joint judge's curve during training (area under it, seed
spread, collapses) and its rate on translations of corrupted test images, with paired differences against CycleGAN."""

from __future__ import annotations

import statistics

from callbacks.markdown import table_lines
from coadv.study.tables import (
    SIDES,
    arm,
    arm_name,
    arms,
    baselines,
    direction_label,
    interval_verdict,
    mean_std,
    t_interval,
)

STABILITY_STEPS = (100, 250, 500, 1000)  # batches at which the seed spread is reported


def _curve(record: dict, side: str) -> list[list[float]]:
    return record.get(f"curve_{side}") or []


def value_at(curve: list[list[float]], batch: int) -> float | None:
    return next((v for b, v in curve if b == batch), None)


def pairs(methods: list[str]) -> list[tuple[str, str]]:
    """(method, baseline) pairs of the paired differences, each method against its baselines."""
    return [(m, o) for m in methods for o in baselines(m) if m != o]


def paired_line(method: str, other: str, what: str, mine: dict, theirs: dict, higher: bool = True) -> list[str]:
    """The paired difference ``mine - theirs`` over their common seeds (95 % t interval, verdict); none without one."""
    seeds = sorted(mine.keys() & theirs.keys())
    if not seeds:
        return []
    mean, low, high = t_interval([mine[s] - theirs[s] for s in seeds])
    return [
        f"\n{arm_name(method)} − {arm_name(other)}, {what}: {mean:+.4f} [{low:+.4f}, {high:+.4f}], "
        f"n = {len(seeds)}: {interval_verdict(low, high, higher)}"
    ]


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
        lines = [
            f"**{direction_label(pair, side, svhn_name)}**: joint judge (target, digit) on validation images "
            f"during training; {said}",
            "",
        ]
        header = ["method", "n", "area under the curve (mean level)", *(f"spread (std) at {b}" for b in steps)]
        rows = []
        auc: dict[str, dict[int, float]] = {}
        for method in methods:
            runs = [r for r in base if arm(r) == method]
            auc[method] = {r["seed"]: area_under_curve(*zip(*_curve(r, side))) for r in runs}
            spread = []
            for b in steps:
                values = [v for r in runs if (v := value_at(_curve(r, side), b)) is not None]
                spread.append(f"{statistics.stdev(values):.3f}" if len(values) > 1 else "—")
            falls = "—" if floor is None else sum(collapsed([v for _, v in _curve(r, side)], floor) for r in runs)
            area = mean_std(list(auc[method].values()), 3)
            rows.append([arm_name(method), len(runs), area, *spread, f"{falls} of {len(runs)}"])
        lines += table_lines([*header, "collapses"], rows)
        for method, other in pairs(methods):
            if other in auc:
                lines += paired_line(method, other, "area under the curve", auc[method], auc[other])
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
        lines = [
            f"**{direction_label(pair, side, svhn_name)}**: joint judge (target, digit) on G(corrupted source "
            "test images), each corruption averaged over severities 1-3",
            "",
        ]

        def columns(r: dict, side: str = side) -> list[float]:
            kinds = [statistics.fmean(r[f"rob_{k}_{s}_{side}"] for s in (1, 2, 3)) for k in KINDS]
            return [
                r[f"rob_clean_{side}"],
                *kinds,
                r[f"rob_mean_{side}"],
                r[f"rob_clean_{side}"] - r[f"rob_mean_{side}"],
            ]

        rows = []
        for method in methods:
            runs = [columns(r) for r in base if arm(r) == method]
            rows.append([arm_name(method), len(runs), *(mean_std(list(col), 3) for col in zip(*runs))])
        if reference and f"rob_mean_{side}" in reference:
            rows.append(["no translation", "—", *(f"{v:.3f}" for v in columns(reference))])
        lines += table_lines(["method", "n", *head], rows)
        overall = {m: {r["seed"]: r[f"rob_mean_{side}"] for r in base if arm(r) == m} for m in methods}
        for method, other in pairs(methods):
            lines += paired_line(method, other, "mean over corruptions", overall[method], overall.get(other, {}))
        parts.append("\n".join(lines))
    parts.append(
        "The verdicts use the mean over corruptions (as corruption benchmarks do). The drop from clean is "
        "descriptive only: an arm with a low clean level has little to lose, so doing nothing (no "
        "translation) would win it."
    )
    return "\n\n".join(parts)
