"""The seed's two attack claims, the comparisons that test them, and ``claims.md`` (decision rule:
``coadv.compare.stats``). Each claim is decided three times: at default settings (unequal budgets), at equal
budget, and at equal budget with equal stopping rule — only the last is a fair comparison."""

from __future__ import annotations

from dataclasses import dataclass

from callbacks.markdown import markdown_table
from coadv.compare import stats
from coadv.compare.stats import Comparison, claim_verdict, correct, decide, paired
from coadv.compare.tables import DEFAULT, Run, fmt


@dataclass(frozen=True)
class Claim:
    """A claim that the ``claimed`` attacks find smaller ρ than each of the ``others`` (comparison rows)."""

    key: str
    text: str
    claimed: tuple[str, ...]
    others: tuple[str, ...]


CLAIMS = (
    Claim(
        "a",
        "the quasi-Newton search finds smaller perturbations ρ than MFCC-ivec (one step; and iterated: BIM with "
        "a boundary search, in the feature domain) and than its own Gauss-Newton first step (on VoxCeleb)",
        ("qn_lbfgs", "qn_bfgs"),
        ("gauss_newton", "gauss_newton+min", "mfcc_ivec", "bim+bs"),
    ),
    Claim(
        "b",
        "the step-size-regularized search gives smaller perturbations than conventional attacks (i-vector, "
        "SE-ResNet-34 and ECAPA-TDNN victims)",
        ("ssr",),
        tuple("pgd_l2 bim pgd_linf cw ddn fmn fgsm pgd_l2+bs bim+bs pgd_linf+bs cw+bs fgsm+bs".split()),
    ),
    Claim(
        "c",
        "the second-order searches (quasi-Newton, step-size-regularized) find smaller perturbations than the "
        "strongest first-order minimum-norm attacks, FMN and DDN, at equal budget",
        ("qn_lbfgs", "ssr"),
        ("fmn", "ddn"),
    ),
)
SCOPES = (
    ("default settings (unequal budgets: see grad evals)", lambda c: not c.equal_budget),
    ("equal budget (any stopping rule)", lambda c: c.equal_budget),
    ("equal budget and equal stopping rule (the fair comparison)", lambda c: c.equal_budget and c.equal_stop),
)


def compare(claimed: Run, other: Run, resamples: int, seed: int) -> Comparison:
    p = paired(claimed.trials, other.trials, resamples, seed)
    same_domain = claimed.summary.get("domain", "waveform") == other.summary.get("domain", "waveform")
    return Comparison(
        claimed.victim,
        claimed.setting,
        claimed.row.name,
        other.row.name,
        same_domain,
        equal_budget=claimed.setting != DEFAULT and claimed.budget == other.budget,
        equal_stop=claimed.minimises == other.minimises,
        stops=(claimed.stop, other.stop),
        evals=(claimed.get("grad_evals_mean"), other.get("grad_evals_mean")),
        **p,
    )


FEATURE_ONLY = {"a": ("bim+bs",)}  # claim -> others that stand for MFCC-ivec only in the feature domain


def applies(claim: Claim, run: Run, other: str) -> bool:
    """Whether ``other`` belongs to ``claim`` for ``run``: BIM + boundary search is claim (a)'s iterated MFCC-ivec
    only when run on the features (in the waveform domain it is a waveform BIM, claim (b)'s business)."""
    return other not in FEATURE_ONLY.get(claim.key, ()) or run.summary.get("domain", "waveform") == "mfcc"


def comparisons(runs: list[Run], resamples: int = stats.RESAMPLES, seed: int = 0) -> dict[str, list]:
    """Claim key -> its comparisons among ``runs``: each claimed run against each other run of the same victim
    at the same setting (fixed-cost attacks only at default settings)."""
    index = {(r.victim, r.row.name, r.setting): r for r in runs}
    out: dict[str, list[Comparison]] = {}
    for claim in CLAIMS:
        out[claim.key] = correct(
            [
                compare(run, index[(run.victim, other, run.setting)], resamples, seed)
                for run in runs
                if run.row.name in claim.claimed
                for other in claim.others
                if (run.victim, other, run.setting) in index and applies(claim, run, other)
            ]
        )
    return out


def interval(i: tuple[float, float, float]) -> str:
    return f"{fmt(i[0])} [{fmt(i[1])}, {fmt(i[2])}]"


def comparison_table(found: list[Comparison]) -> str:
    """One row per comparison: settings, stopping rules, budgets spent, success side by side, paired ratio."""
    header = [
        "victim",
        "setting",
        "claimed vs other",
        "stops (claimed / other)",
        "equal stop",
        "grad evals",
        "attacked",
        "success",
        "Δ success [95 % CI]",
        "both flip",
        "median ρ_other/ρ_claimed, all attacked [95 % CI]",
        "p (Holm)",
        "verdict",
    ]
    rows = [
        [
            c.victim,
            c.setting if c.setting == DEFAULT else f"B = {c.setting}",
            f"{c.claimed} vs {c.other}",
            " / ".join(c.stops),
            "yes" if c.equal_stop else "no",
            f"{fmt(c.evals[0])} / {fmt(c.evals[1])}",
            c.attacked,
            f"{fmt(c.success[0])} / {fmt(c.success[1])}",
            interval(c.success_diff),
            c.pairs,
            interval(c.ratio) if c.comparable else "n/a (other units)",
            fmt(c.p_holm if c.p_holm is not None else c.p, 2) if c.comparable else "—",
            "{}: {}".format(*decide(c)),
        ]
        for c in found
    ]
    return markdown_table(header, rows)


def scopes_with(found: list[Comparison], outcome: str) -> str:
    """``other on victim at settings`` for the comparisons decided ``outcome``, grouped."""
    groups: dict[str, list[str]] = {}
    for c in found:
        if decide(c)[0] == outcome:
            groups.setdefault(f"{c.claimed} vs {c.other} on {c.victim}", []).append(
                c.setting if c.setting == DEFAULT else f"B={c.setting}"
            )
    return "; ".join(f"{k} ({', '.join(v)})" for k, v in groups.items()) or "—"


def claim_section(claim: Claim, found: list[Comparison]) -> str:
    rows = []
    for scope, keep in SCOPES:
        chosen = [c for c in found if keep(c)]
        rows.append(
            [
                scope,
                claim_verdict(chosen) if chosen else "not run",
                scopes_with(chosen, "holds"),
                scopes_with(chosen, "does not hold"),
            ]
        )
    lines = [
        f"## Claim ({claim.key}): {claim.text}",
        "",
        f"Claimed: {', '.join(claim.claimed)}; against: {', '.join(claim.others)}.",
        "",
        markdown_table(["scope", "verdict", "holds for", "does not hold for"], rows),
    ]
    unmatched = [c for c in found if decide(c)[0] not in stats.DECIDED]
    if unmatched:
        lines.append(
            "Not decided: "
            + "; ".join(f"{c.claimed} vs {c.other} on {c.victim} ({c.setting}): {decide(c)[1]}" for c in unmatched)
            + "\n"
        )
    lines.append(comparison_table(found) if found else "No comparison: the runs it needs are missing.\n")
    return "\n".join(lines)


STOPPING_NOTE = (
    'Stopping rule: "keeps minimising" rows return the smallest success found after the first flip (SSR, '
    "quasi-Newton, DDN, FMN, CW, Gauss-Newton '+min', and '+bs' rows, whose bisection shrinks the first success "
    "along its direction); the others return their first success or one fixed step (FGSM, BIM, PGD, Gauss-Newton, "
    "MFCC-ivec). A comparison is fair only at equal budget and equal stopping rule; every row says which it has."
)


def claims_markdown(
    found: dict[str, list[Comparison]], command: str, resamples: int = stats.RESAMPLES, seed: int = 0
) -> str:
    """``claims.md``: how it was made, the decision rule, then each claim with its verdicts and comparisons."""
    rule = stats.__doc__.split("\n\n", 1)[1].strip()
    for name, value in (("RESAMPLES", resamples), ("LEVEL", f"{stats.LEVEL}"), ("MIN_PAIRS", stats.MIN_PAIRS)):
        rule = rule.replace(f"``{name}``", str(value))
    rule = rule.replace("seeded)", f"seed {seed})")
    head = ["# Attack claims: which hold", "", f"Reproduce: `{command}`", "", rule, "", STOPPING_NOTE, ""]
    return "\n".join(head + [claim_section(c, found.get(c.key, [])) for c in CLAIMS])
