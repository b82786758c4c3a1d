"""Tables and curves of ``coadv compare-attacks``: default settings, equal budgets, paired with a reference, ρ vs
budget. Every table states each row's stopping rule; only rows at one budget are compared at equal budget."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from callbacks.markdown import markdown_table
from coadv.compare.budgets import BOUNDARY_STEPS, Variant
from coadv.compare.stats import RESAMPLES, paired

DEFAULT = "default"


@dataclass
class Run:
    """One finished ``coadv test`` run of a comparison: its row, setting, summary.json and trials.csv."""

    victim: str
    row: Variant
    setting: str  # "default" or the budget B as text
    summary: dict
    trials: dict[str, np.ndarray]
    minimises: bool  # keeps minimising after the first flip
    stop: str  # how it stops, in words
    folder: Path

    @property
    def budget(self) -> int | None:
        """The gradient-evaluation cap of the run (fixed-cost attacks: theirs), None at default settings."""
        return self.row.fixed_cost or (None if self.setting == DEFAULT else int(self.setting))

    @property
    def label(self) -> str:
        domain = self.summary.get("domain", "waveform")
        return self.row.name if domain == "waveform" else f"{self.row.name} [{domain}]"

    def get(self, key: str) -> float:
        value = self.summary.get(key)
        return float("nan") if value is None else float(value)


def fmt(value: float, digits: int = 3) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}g}"


def shift(run: Run, key: str) -> str:
    """``clean → after`` of a FAR / FRR."""
    return f"{fmt(run.get('clean_' + key))} → {fmt(run.get(key))}"


CSV_KEYS = [
    "success_rate",
    "rho_median",
    "rho_median_successes",
    "rho_feat_median",
    "rho_mean",
    "snr_db_mean",
    "linf_mean",
    "pesq_mean",
    "stoi_mean",
    "grad_evals_mean",
    "wall_s_mean",
    "clean_far",
    "far",
    "clean_frr",
    "frr",
]


def csv_rows(runs: list[Run]) -> list[list]:
    """One row per run (header first): what the tables show, in full precision."""
    header = ["victim", "attack", "setting", "budget", "keeps_minimising", "stopping_rule", "domain", *CSV_KEYS]
    rows = [
        [
            r.victim,
            r.row.name,
            r.setting,
            r.budget if r.budget is not None else "",
            int(r.minimises),
            r.stop,
            r.summary.get("domain", "waveform"),
            *(r.get(k) for k in CSV_KEYS),
        ]
        for r in runs
    ]
    return [header, *rows]


def default_table(runs: list[Run]) -> str:
    """Each attack at its config's settings: success, ρ (median, mean), the MFCC-domain ρ_feat median (i-vector
    victims: what a waveform attack changes in the features, comparable with MFCC-ivec), SNR, PESQ / STOI (when computed),
    gradient evaluations, wall time, FAR / FRR clean → after, and the stopping rule. Budgets differ: see grad
    evals."""
    perceptual = [k for k in ("pesq_mean", "stoi_mean") if any(not math.isnan(r.get(k)) for r in runs)]
    feature = ["rho_feat_median"] * any(not math.isnan(r.get("rho_feat_median")) for r in runs)
    header = [
        "attack",
        "success",
        "ρ median",
        "ρ mean",
        *(["ρ_feat median (MFCC)"] * len(feature)),
        "SNR dB",
        *(k[:4].upper() for k in perceptual),
        "grad evals",
        "wall s",
        "FAR clean → after",
        "FRR clean → after",
        "stops",
    ]
    rows = [
        [
            r.label,
            fmt(r.get("success_rate")),
            fmt(r.get("rho_median")),
            fmt(r.get("rho_mean")),
            *(fmt(r.get(k)) for k in feature),
            fmt(r.get("snr_db_mean")),
            *(fmt(r.get(k)) for k in perceptual),
            fmt(r.get("grad_evals_mean")),
            fmt(r.get("wall_s_mean")),
            shift(r, "far"),
            shift(r, "frr"),
            ("keeps minimising: " if r.minimises else "") + r.stop,
        ]
        for r in runs
    ]
    return markdown_table(header, rows)


def budget_columns(runs: list[Run]) -> list[int]:
    return sorted({r.budget for r in runs if r.budget is not None})


def budget_table(runs: list[Run]) -> str:
    """Rows: attacks; columns: budgets B (gradient evaluations per trial); cells ``success / median ρ``.
    Fixed-cost attacks (FGSM, MFCC-ivec) fill the B = 1 column with their single run."""
    columns = budget_columns(runs)
    names = list(dict.fromkeys(r.label for r in runs if r.budget is not None))
    cell = {(r.label, r.budget): r for r in runs if r.budget is not None}
    header = ["attack", "keeps minimising", *(f"B = {b}" for b in columns)]
    rows = []
    for name in names:
        first = next(r for r in runs if r.label == name and r.budget is not None)
        cells = [
            f"{fmt(c.get('success_rate'))} / {fmt(c.get('rho_median'))}" if (c := cell.get((name, b))) else ""
            for b in columns
        ]
        rows.append([name, "yes" if first.minimises else "no", *cells])
    return markdown_table(header, rows)


def reference_table(runs: list[Run], reference: str, resamples: int = RESAMPLES, seed: int = 0) -> str:
    """Each attack of ``reference``'s domain paired with it at one setting, over every attacked trial (failure:
    ρ = ∞): lower-median ``ρ_attack / ρ_reference`` with its sign-test interval, and both success rates."""
    ref = next((r for r in runs if r.row.name == reference), None)
    if ref is None:
        return ""
    rows = []
    for run in runs:
        if run is ref or run.summary.get("domain", "waveform") != ref.summary.get("domain", "waveform"):
            continue
        p = paired(ref.trials, run.trials, resamples, seed)
        rows.append(
            [
                run.row.name,
                p["pairs"],
                f"{fmt(p['success'][0])} / {fmt(p['success'][1])}",
                f"{fmt(p['ratio'][0])} [{fmt(p['ratio'][1])}, {fmt(p['ratio'][2])}]",
            ]
        )
    header = [
        "attack",
        "both flip",
        f"success {reference} / attack",
        f"median ρ_attack / ρ_{reference}, all attacked [95 % CI]",
    ]
    return markdown_table(header, rows)


def curves_png(runs: list[Run], title: str) -> bytes:
    """Median ρ over every attacked trial (failure: ρ = ∞; not drawn when over half fail) (log) and success rate against the budget B (log x), one line per attack; fixed-
    cost attacks are points at B = 1, default-settings runs hollow markers at their mean gradient evaluations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rho, ax_ok) = plt.subplots(1, 2, figsize=(12, 4.6))
    for i, name in enumerate(dict.fromkeys(r.row.name for r in runs)):
        mine = [r for r in runs if r.row.name == name]
        color = f"C{i % 10}"
        waveform = mine[0].label == name
        at = sorted((r for r in mine if r.budget is not None), key=lambda r: r.budget)
        x = [r.budget for r in at]
        style = "--" if mine[0].row.boundary_search else "-"
        if waveform:
            ax_rho.plot(x, [r.get("rho_median") for r in at], style, marker="o", color=color, label=name)
        ax_ok.plot(x, [r.get("success_rate") for r in at], style, marker="o", color=color, label=mine[0].label)
        for r in (r for r in mine if r.setting == DEFAULT and r.row.fixed_cost is None):
            if waveform:
                ax_rho.plot([r.get("grad_evals_mean")], [r.get("rho_median")], "o", mfc="none", color=color)
            ax_ok.plot([r.get("grad_evals_mean")], [r.get("success_rate")], "o", mfc="none", color=color)
    ax_rho.set(
        xscale="log",
        yscale="log",
        xlabel="budget B (gradient evaluations per trial)",
        ylabel="median ρ = ‖δ‖₂/‖x‖₂ (failure = ∞)",
        title=title,
    )
    ax_ok.set(
        xscale="log",
        ylim=(-0.02, 1.02),
        xlabel="budget B",
        ylabel="success rate (attacked trials)",
        title=f"hollow: default settings at their mean evaluations; dashed: + {BOUNDARY_STEPS} bisections",
    )
    ax_ok.title.set_fontsize(8)
    ticks = sorted({r.budget for r in runs if r.budget is not None})
    for ax in (ax_rho, ax_ok):
        ax.grid(alpha=0.3, which="both")
        if ticks:  # the budgets themselves, not powers of ten
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.xaxis.set_minor_formatter("")
    ax_ok.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()
