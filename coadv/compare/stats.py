"""Paired statistics of two attack runs on the same trials, and the rule that decides the seed's claims.

Ratio convention: per attacked trial (decided correctly when clean, in both runs), ``ρ_other / ρ_claimed`` with a
failure counted as ρ = ∞: a trial only the claimed method flips has ratio ∞, one only the other flips ratio 0, one
neither flips ratio 1 (a tie). No trial is left out, so failures on the hardest trials cannot hide (no
survivorship). A ratio > 1 means the claimed method found the smaller perturbation. The median is the lower middle
order statistic ``x_(⌈n/2⌉)`` everywhere (tables, curves, ratios; ``median``), defined with infinite values.
Its interval is the exact distribution-free order-statistic interval of the sign test (``median_interval``, at
``LEVEL``); the success difference keeps a percentile bootstrap over trials (``RESAMPLES`` resamples, seeded).

Decision rule for one comparison (``decide``), in order:

1. the other attack perturbs another domain (MFCC-ivec's ρ is in feature units, a waveform search's in waveform
   units) -> "not comparable" (success only); ``compare-attacks --domain feature`` runs the searches on the
   features too, where the two are comparable;
2. the claimed method flips fewer trials than the other -> "does not hold" (a smaller ρ bought with fewer
   successes is no win), whatever the number of trials;
3. fewer than ``MIN_PAIRS`` trials attacked by both -> "too few trials";
4. the one-sided exact sign test of "median ratio > 1" (ties count against), Holm-corrected across the
   comparisons of one claim table (``holm``), rejects at (1 - ``LEVEL``) / 2, and the median's interval lies
   above 1 -> "holds";
5. otherwise "does not hold" (the other is smaller when the ratio's interval lies below 1, else no difference
   shown).

A claim over several comparisons (``claim_verdict``): "holds" when every decided comparison holds, "does not hold" when
none does, "mixed" otherwise; "not decided" when no comparison was decided (2.-5.).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
from scipy.stats import binom

RESAMPLES = 2000
LEVEL = 0.95
MIN_PAIRS = 10
DECIDED = ("holds", "does not hold")

MEAN = partial(np.mean, axis=-1)  # per resample: statistics map [..., N] -> [...]
Interval = tuple[float, float, float]  # estimate, low, high
NAN3: Interval = (float("nan"),) * 3


def median(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """The lower median ``x_(⌈n/2⌉)`` along ``axis`` (torch.median's convention; infinite values allowed)."""
    values = np.sort(np.asarray(values, dtype=float), axis=axis)
    return np.take(values, (values.shape[axis] - 1) // 2, axis=axis)


def median_interval(values: np.ndarray, level: float = LEVEL) -> Interval:
    """Lower median of ``values`` and its exact order-statistic (sign-test) interval ``[x_(k), x_(n-k+1)]``, ``k``
    the largest with P(Bin(n, 1/2) <= k - 1) <= (1 - level) / 2 (coverage >= ``level`` for any continuous
    distribution); ``(-inf, inf)`` when n is too small for any k >= 1 (n <= 5 at 95 %). NaN for no values."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0:
        return NAN3
    k = int((binom.cdf(np.arange(n), n, 0.5) <= (1 - level) / 2).sum())  # P(B <= j) for j = k - 1 <= bound
    if k == 0:
        return float(median(x)), -math.inf, math.inf
    return float(median(x)), float(x[k - 1]), float(x[n - k])


def sign_test(ratios: np.ndarray) -> float:
    """One-sided exact sign-test p-value of "the median ratio exceeds 1" over all n trials: P(Bin(n, 1/2) >=
    #(ratio > 1)); a tie (ratio = 1, e.g. both attacks fail) counts as not above, so it agrees with the interval
    of ``median_interval``. 1.0 for no trials."""
    ratios = np.asarray(ratios, dtype=float)
    above = int((ratios > 1).sum())
    n = len(ratios)
    return float(binom.sf(above - 1, n, 0.5)) if n else 1.0


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given): ``max_{j <= i} min(1, (m - j + 1) p_(j))``."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def bootstrap(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray] = MEAN,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> Interval:
    """``statistic`` of ``values [N]`` (one per trial) and its percentile-bootstrap interval at ``level``:
    ``resamples`` draws of N trials with replacement from ``np.random.default_rng(seed)``. ``statistic`` maps
    ``[..., N]`` to ``[...]``. NaN for no trials."""
    values = np.asarray(values, dtype=float)
    if resamples < 1 or not 0 < level < 1:
        raise ValueError(f"bootstrap: resamples {resamples} must be >= 1 and level {level} in (0, 1)")
    if values.ndim != 1:
        raise ValueError(f"bootstrap: expected one value per trial, got shape {values.shape}")
    if len(values) == 0:
        return NAN3
    n = len(values)
    rng = np.random.default_rng(seed)
    draws = []
    chunk = max(1, 4_000_000 // n)  # bounded memory for large trial lists
    for start in range(0, resamples, chunk):
        draws.append(statistic(values[rng.integers(0, n, (min(chunk, resamples - start), n))]))
    low, high = np.quantile(np.concatenate(draws), [(1 - level) / 2, (1 + level) / 2])
    return float(statistic(values)), float(low), float(high)


@dataclass
class Comparison:
    """A claimed attack against another on the same trials at one setting ("default" or a budget)."""

    victim: str
    setting: str
    claimed: str
    other: str
    comparable: bool  # both perturb the same domain (the waveform, or the MFCC features)
    equal_budget: bool
    equal_stop: bool  # both keep minimising after the first flip, or neither does
    stops: tuple[str, str]
    evals: tuple[float, float]  # mean gradient evaluations per attacked trial
    attacked: int  # trials decided correctly when clean (by both runs)
    success: tuple[float, float]
    success_diff: Interval  # success_claimed - success_other, paired bootstrap
    pairs: int  # trials both flip (for reference: the ratio covers every attacked trial)
    ratio: Interval  # lower median of rho_other / rho_claimed over every attacked trial (failure: rho = inf)
    p: float = 1.0  # one-sided sign test of "median ratio > 1"
    p_holm: float | None = None  # p after Holm's correction within the claim table (None: not corrected yet)


def aligned(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[dict, dict]:
    """Both per-trial tables restricted to the trial indices they share, in index order."""
    common = np.intersect1d(a["index"], b["index"])

    def pick(t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        order = np.argsort(t["index"], kind="stable")
        rows = order[np.searchsorted(t["index"][order], common)]
        return {k: v[rows] for k, v in t.items()}

    return pick(a), pick(b)


def ratios(claimed: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per attacked trial ``ρ_other / ρ_claimed`` (failure: ρ = ∞; neither flips: 1), and the attacked mask of the
    aligned tables."""
    a, b = aligned(claimed, other)
    attacked = (a["clean_correct"] > 0) & (b["clean_correct"] > 0)
    won_a = (a["success"] > 0) & attacked
    won_b = (b["success"] > 0) & attacked
    rho_a = np.where(won_a, a["rho"], np.inf)[attacked]
    rho_b = np.where(won_b, b["rho"], np.inf)[attacked]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = rho_b / rho_a
    tie = (np.isinf(rho_a) & np.isinf(rho_b)) | ((rho_a == 0) & (rho_b == 0))
    if np.isnan(rho_a).any() or np.isnan(rho_b).any():
        raise ValueError("a trial has ρ = NaN: its adversarial audio was not finite; rerun the attack")
    return np.where(tie, 1.0, out), attacked


def paired(
    claimed: dict[str, np.ndarray], other: dict[str, np.ndarray], resamples: int = RESAMPLES, seed: int = 0
) -> dict:
    """Success rates, their paired difference (bootstrap interval) and the lower-median ratio ``ρ_other /
    ρ_claimed`` over every attacked trial (failure: ρ = ∞) with its sign-test interval and one-sided p-value;
    trials are matched by ``index``, attacked = decided correctly when clean in both runs."""
    a, b = aligned(claimed, other)
    r, attacked = ratios(claimed, other)
    won_a = (a["success"] > 0) & attacked
    won_b = (b["success"] > 0) & attacked
    diff = (won_a.astype(float) - won_b.astype(float))[attacked]
    return {
        "attacked": int(attacked.sum()),
        "success": (float(won_a[attacked].mean()), float(won_b[attacked].mean())) if attacked.any() else NAN3[:2],
        "success_diff": bootstrap(diff, MEAN, resamples, seed),
        "pairs": int((won_a & won_b).sum()),
        "ratio": median_interval(r),
        "p": sign_test(r),
    }


def correct(comparisons: list[Comparison]) -> list[Comparison]:
    """Sets ``p_holm`` of the comparable comparisons of one claim table (Holm across them); returns them."""
    family = [c for c in comparisons if c.comparable]
    for c, adjusted in zip(family, holm([c.p for c in family])):
        c.p_holm = adjusted
    return comparisons


def decide(c: Comparison) -> tuple[str, str]:
    """(verdict, reason) of one comparison by the rule in the module docstring."""
    if not c.comparable:
        return "not comparable", "ρ in another domain's units; success rates only"
    if c.success[0] < c.success[1]:
        return "does not hold", "the claimed method flips fewer trials"
    if c.attacked < MIN_PAIRS:
        return "too few trials", f"{c.attacked} trials attacked (< {MIN_PAIRS})"
    p = c.p if c.p_holm is None else c.p_holm
    if p <= (1 - LEVEL) / 2 and c.ratio[1] > 1:
        return (
            "holds",
            f"the claimed method's ρ is smaller (sign test p = {p:.2g}{'' if c.p_holm is None else ', Holm'})",
        )
    if c.ratio[2] < 1:
        return "does not hold", "the other attack's ρ is smaller"
    return "does not hold", f"no difference shown (p = {p:.2g})"


def claim_verdict(comparisons: list[Comparison]) -> str:
    """ "holds" / "does not hold" / "mixed" over the decided comparisons, "not decided" without any."""
    decided = [decide(c)[0] for c in comparisons if decide(c)[0] in DECIDED]
    if not decided:
        return "not decided"
    if all(v == "holds" for v in decided):
        return "holds"
    return "does not hold" if all(v == "does not hold" for v in decided) else "mixed"
