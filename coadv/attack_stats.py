"""Paired statistics of two attack runs on the same trials, and the rule that decides the seed's claims.

Ratio convention: per trial, ``ρ_other / ρ_claimed`` on the trials both attacks flip ("at equal success"); a
ratio > 1 means the claimed method found the smaller perturbation. Intervals are percentile bootstraps over
trials (``RESAMPLES`` resamples, seeded, so a table is reproducible), at ``LEVEL``.

Decision rule for one comparison (``decide``), in order:

1. the other attack perturbs another domain (MFCC-ivec: ρ in feature units) -> "not comparable" (success only);
2. fewer than ``MIN_PAIRS`` trials both flip -> "too few trials";
3. the claimed method flips fewer trials: the interval of success_claimed - success_other lies below 0
   -> "does not hold" (a smaller ρ bought with fewer successes is no win);
4. the interval of the median ratio lies above 1 -> "holds";
5. otherwise "does not hold" (the other is smaller when its interval lies below 1, else no difference shown).

A claim over several comparisons (``verdict``): "holds" when every decided comparison holds, "does not hold" when
none does, "mixed" otherwise; "not decided" when no comparison was decided (3.-5.).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95
MIN_PAIRS = 10
DECIDED = ("holds", "does not hold")

MEDIAN = partial(np.median, axis=-1)  # per resample: statistics map [..., N] -> [...]
MEAN = partial(np.mean, axis=-1)
Interval = tuple[float, float, float]  # estimate, low, high
NAN3: Interval = (float("nan"),) * 3


def bootstrap(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray] = MEDIAN,
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
    n, rng, draws = len(values), np.random.default_rng(seed), []
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
    comparable: bool  # both perturb the waveform
    equal_budget: bool
    equal_stop: bool  # both keep minimising after the first flip, or neither does
    stops: tuple[str, str]
    evals: tuple[float, float]  # mean gradient evaluations per attacked trial
    attacked: int  # trials decided correctly when clean (by both runs)
    success: tuple[float, float]
    success_diff: Interval  # success_claimed - success_other, paired bootstrap
    pairs: int  # trials both flip
    ratio: Interval  # median rho_other / rho_claimed over them


def aligned(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[dict, dict]:
    """Both per-trial tables restricted to the trial indices they share, in index order."""
    common = np.intersect1d(a["index"], b["index"])

    def pick(t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        order = np.argsort(t["index"], kind="stable")
        rows = order[np.searchsorted(t["index"][order], common)]
        return {k: v[rows] for k, v in t.items()}

    return pick(a), pick(b)


def paired(claimed: dict[str, np.ndarray], other: dict[str, np.ndarray], resamples: int = RESAMPLES,
           seed: int = 0) -> dict:  # fmt: skip
    """Success rates, their paired difference and the median ratio ``ρ_other / ρ_claimed`` on the trials both
    flip, with bootstrap intervals; trials are matched by ``index``, attacked = decided correctly when clean."""
    a, b = aligned(claimed, other)
    attacked = (a["clean_correct"] > 0) & (b["clean_correct"] > 0)
    won_a, won_b = (a["success"] > 0) & attacked, (b["success"] > 0) & attacked
    both = won_a & won_b & (a["rho"] > 0)
    diff = (won_a.astype(float) - won_b.astype(float))[attacked]
    return {
        "attacked": int(attacked.sum()),
        "success": (float(won_a[attacked].mean()), float(won_b[attacked].mean())) if attacked.any() else NAN3[:2],
        "success_diff": bootstrap(diff, MEAN, resamples, seed),
        "pairs": int(both.sum()),
        "ratio": bootstrap(b["rho"][both] / a["rho"][both], resamples=resamples, seed=seed),
    }


def decide(c: Comparison) -> tuple[str, str]:
    """(verdict, reason) of one comparison by the rule in the module docstring."""
    if not c.comparable:
        return "not comparable", "ρ in another domain's units; success rates only"
    if c.pairs < MIN_PAIRS:
        return "too few trials", f"{c.pairs} trials both flip (< {MIN_PAIRS})"
    if c.success_diff[2] < 0:
        return "does not hold", "the claimed method flips fewer trials"
    if c.ratio[1] > 1:
        return "holds", "the claimed method's ρ is smaller"
    if c.ratio[2] < 1:
        return "does not hold", "the other attack's ρ is smaller"
    return "does not hold", "no difference shown (interval contains 1)"


def verdict(comparisons: list[Comparison]) -> str:
    """ "holds" / "does not hold" / "mixed" over the decided comparisons, "not decided" without any."""
    decided = [decide(c)[0] for c in comparisons if decide(c)[0] in DECIDED]
    if not decided:
        return "not decided"
    if all(v == "holds" for v in decided):
        return "holds"
    return "does not hold" if all(v == "does not hold" for v in decided) else "mixed"
