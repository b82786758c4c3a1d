"""The study's figures: the probe per method and direction, the stability curves, robustness against severity."""

from __future__ import annotations

import statistics
from pathlib import Path

from coadv.constants import METHODS as NAMES
from coadv.study.tables import SIDES, _ordered, arm, arm_name, arms, by_seed, direction_label


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
                mean = values.mean(0)
                std = values.std(0)
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
                ax.plot(
                    range(4),
                    [statistics.fmean(level(r, s) for r in runs) for s in range(4)],
                    "o-",
                    color=f"C{i}",
                    label=arm_name(method),
                    ms=3,
                )
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
