"""The study's tables: per direction, mean ± std per method next to reference rows; paired differences against
CycleGAN (and, for ablation variants, against the base configuration) with a 95 % Student-t interval over seeds, and a
verdict per metric and direction. Every number is measured on test images at the last step of a fixed budget."""

from __future__ import annotations

import math
import statistics

from callbacks.markdown import table_lines
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


def interval_verdict(low: float, high: float, higher_is_better: bool) -> str:
    """``holds`` when the interval lies on the better side of 0, ``does not hold`` when it lies on the worse side,
    ``inconclusive`` when it contains 0 (or there are too few seeds for one)."""
    if math.isnan(low):
        return "inconclusive (fewer than 2 seeds)"
    better = low > 0 if higher_is_better else high < 0
    worse = high < 0 if higher_is_better else low > 0
    return "holds" if better else "does not hold" if worse else "inconclusive"


def by_seed(records: list[dict], variant: str, method: str, pair: str, key: str) -> dict[int, float]:
    return {
        r["seed"]: r[key]
        for r in records
        if (r["variant"], r["method"], r["pair"]) == (variant, method, pair) and key in r
    }


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
    rows = []
    for variant in _ordered(records, "variant"):
        for method in _ordered(records, "method"):
            cols = [list(by_seed(records, variant, method, pair, f"{k}_{side}").values()) for k, _, _ in METRICS]
            if cols[0]:
                cells = [mean_std(v, _digits(k)) for v, (k, _, _) in zip(cols, METRICS)]
                rows.append([variant, NAMES.get(method, method), len(cols[0]), *cells])
    if reference:
        own = ["tot_oracle", "judge_own", "joint_own", "real_own", "kid_train", "fid_train"]
        for name, keys in (
            ("no translation (source images as they are)", [f"{k}_src" for k, _, _ in METRICS]),
            ("target domain itself (oracle / own test / train vs test)", own),
        ):
            cells = [
                f"{reference[f'{k}_{side}']:.{_digits(m)}f}" if f"{k}_{side}" in reference else "—"
                for k, (m, _, _) in zip(keys, METRICS)
            ]
            rows.append(["—", name, "—", *cells])
    header = ["variant", "method", "n", *(title for _, title, _ in METRICS)]
    return "\n".join(table_lines(header, rows))


def paired_arms(records: list[dict]) -> list[tuple[str, str, str, str]]:
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


def difference(records: list[dict], reference: dict | None, pair: str, key: str, side: str, pairing: tuple) -> str:
    """One verdict cell: the paired difference (same seed) of ``pairing`` = (variant, method, versus variant, versus
    method) on ``key`` in one direction, its interval and verdict; "—" without shared seeds."""
    variant, method, vs_variant, vs_method = pairing
    mine = by_seed(records, variant, method, pair, f"{key}_{side}")
    theirs = by_seed(records, vs_variant, vs_method, pair, f"{key}_{side}")
    seeds = sorted(mine.keys() & theirs.keys())
    if not seeds:
        return "—"
    mean, low, high = t_interval([mine[s] - theirs[s] for s in seeds])
    higher = next(h for k, _, h in METRICS if k == key)
    d = _digits(key) + (1 if key != "fid" else 0)
    text = f"{mean:+.{d}f} [{low:+.{d}f}, {high:+.{d}f}], n = {len(seeds)}: {interval_verdict(low, high, higher)}"
    return text + flag(records, reference, pair, key, side)


def verdict_table(records: list[dict], reference: dict | None, pair: str, svhn_name: str) -> str:
    """Paired differences (same seed) per comparison and metric, both directions, with intervals and verdicts."""
    rows = []
    for variant, method, vs_variant, vs_method in paired_arms(records):
        name = f"{NAMES.get(method, method)} − {NAMES.get(vs_method, vs_method)}"
        if variant != "base" or vs_variant != "base":
            name = f"{NAMES.get(method, method)} [{variant}] − {NAMES.get(vs_method, vs_method)} [{vs_variant}]"
        pairing = (variant, method, vs_variant, vs_method)
        for key, title, _ in METRICS:
            rows.append([name, title, *(difference(records, reference, pair, key, side, pairing) for side in SIDES)])
    header = ["comparison", "metric", *(direction_label(pair, s, svhn_name) for s in SIDES)]
    return "\n".join(table_lines(header, rows))


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
    return [
        list(by_seed(records, v, m, pair, key).values())
        for v in _ordered(records, "variant")
        for m in _ordered(records, "method")
    ]


# metrics on which "better than doing nothing" is a claim: untranslated images read as the source domain, so the
# joint judge, "read as target", KID and FID of any translation beat them trivially
AGAINST_NOTHING = ("tot", "judge")


def no_translation_table(records: list[dict], reference: dict, pair: str, svhn_name: str) -> str:
    """Each method (base and searched weights) against no translation: mean over seeds minus the no-translation
    value, with the Student-t interval over seeds (the no-translation value is taken as fixed: its own sampling
    noise is not in the interval), per informative metric and direction."""

    def cell(variant: str, method: str, key: str, side: str, higher: bool) -> str:
        mine = by_seed(records, variant, method, pair, f"{key}_{side}")
        nothing = reference.get(f"{key}_src_{side}")
        if not mine or nothing is None:
            return "—"
        mean, low, high = t_interval([v - nothing for v in mine.values()])
        text = f"{mean:+.4f} [{low:+.4f}, {high:+.4f}], n = {len(mine)}: {interval_verdict(low, high, higher)}"
        return text + flag(records, reference, pair, key, side)

    rows = []
    for variant in [v for v in ("base", SEARCHED) if v in _ordered(records, "variant")]:
        for method in _ordered(records, "method"):
            if variant == SEARCHED and method == "cyclegan":
                continue
            name = NAMES.get(method, method) + (f" [{variant}]" if variant != "base" else "")
            for key, title, higher in (m for m in METRICS if m[0] in AGAINST_NOTHING):
                cells = [cell(variant, method, key, side, higher) for side in SIDES]
                if any(c != "—" for c in cells):
                    rows.append([name, title, *cells])
    header = ["method − no translation", "metric", *(direction_label(pair, s, svhn_name) for s in SIDES)]
    return "\n".join(table_lines(header, rows)) if rows else ""


ABLATION_METRICS = ("tot", "joint")  # per direction: the probe and the joint judge, informative both ways here


def ablation_table(records: list[dict], pair: str, svhn_name: str) -> str:
    """One row per ablation variant (not the searched weights): the variant − the same method in ``base`` over
    shared seeds, for the probe and the joint judge of both directions, with the 95 % t interval and verdict."""
    present = {(r["variant"], r["method"]) for r in records}
    rows = [
        (v, m)
        for v in _ordered(records, "variant")
        if v not in ("base", SEARCHED)
        for m in _ordered(records, "method")
        if {(v, m), ("base", m)} <= present
    ]
    if not rows:
        return ""
    keys = [(k, side) for side in SIDES for k in ABLATION_METRICS]
    titles = {k: t.split(" ↑")[0] for k, t, _ in METRICS}
    header = ["variant", "method", *(f"{direction_label(pair, side, svhn_name)} {titles[k]}" for k, side in keys)]
    lines = []
    for variant, method in rows:
        cells = []
        for k, side in keys:
            mine = by_seed(records, variant, method, pair, f"{k}_{side}")
            base = by_seed(records, "base", method, pair, f"{k}_{side}")
            seeds = sorted(mine.keys() & base.keys())
            mean, low, high = t_interval([mine[s] - base[s] for s in seeds])
            interval = f" [{low:+.3f}, {high:+.3f}]" if len(seeds) > 1 else ""
            cells.append(
                "—" if not seeds else f"{mean:+.3f}{interval} n={len(seeds)}: {interval_verdict(low, high, True)}"
            )
        lines.append([variant, NAMES.get(method, method), *cells])
    return "\n".join(table_lines(header, lines))
