"""Per-trial columns of an attack run, their aggregates, and the optional perceptual scores (PESQ, STOI).

A table of trials is a dict of named columns (``COLUMNS``, each a float64 tensor ``[N]``), in ``COLUMNS`` order: the
order of ``trials.csv``.

PESQ (ITU-T P.862.2 wideband, 16 kHz) and STOI come from torchmetrics' functional audio metrics, one value per
utterance, adversarial against clean. They need the ``pesq`` and ``pystoi`` packages (``pip install
'coadv[perceptual]'``); without them the columns are NaN and one log line says so.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import warnings

import torch
from torch import Tensor

log = logging.getLogger(__name__)

COLUMNS = (
    "index",
    "label",
    "clean_correct",
    "success",
    "rho",
    "snr_db",
    "linf",
    "pesq",
    "stoi",
    "iterations",
    "grad_evals",
    "wall_s",
    "score_before",
    "score_after",
    "rho_feat",
)

PERCEPTUAL_PACKAGES = {"pesq": "pesq", "stoi": "pystoi"}  # column -> the package its torchmetrics function needs


def perceptual_available() -> dict[str, bool]:
    """Which perceptual columns can be computed here (``{"pesq": bool, "stoi": bool}``)."""
    return {k: importlib.util.find_spec(p) is not None for k, p in PERCEPTUAL_PACKAGES.items()}


def announce_perceptual(enabled: bool, speak: bool = True) -> dict[str, bool]:
    """The perceptual columns to compute when ``enabled``; logs one line naming what is missing and the fix (when
    ``speak``: rank 0 only under DDP)."""
    if not enabled:
        return {k: False for k in PERCEPTUAL_PACKAGES}
    found = perceptual_available()
    missing = [PERCEPTUAL_PACKAGES[k] for k, ok in found.items() if not ok]
    if missing and speak:
        log.warning(
            "perceptual scores: %s not installed, so the %s column(s) are NaN; pip install 'coadv[perceptual]' "
            "(or set model.init_args.perceptual=false to silence this)",
            " and ".join(missing),
            " and ".join(k for k, ok in found.items() if not ok),
        )
    return found


def perceptual_scores(adversarial: Tensor, clean: Tensor, which: dict[str, bool], rate: int = 16000) -> list[float]:
    """``[pesq, stoi]`` of one adversarial waveform ``[T]`` against its clean version ``[T]`` (NaN when not
    computed; PESQ NaN when the pesq library refuses the pair: under 1/4 s, or no speech detected; STOI NaN when
    pystoi finds under 30 frames of speech, about 0.4 s, where it would return 1e-5)."""
    pesq = stoi = math.nan
    adversarial = adversarial.detach().double().cpu()
    clean = clean.detach().double().cpu()
    if which.get("pesq"):
        import pesq as backend
        from torchmetrics.functional.audio import perceptual_evaluation_speech_quality

        try:
            pesq = float(perceptual_evaluation_speech_quality(adversarial, clean, rate, "wb"))
        except backend.PesqError as error:  # BufferTooShortError, NoUtterancesError: no score for this pair
            log.debug("PESQ undefined for this trial: %s", error)
    if which.get("stoi"):
        from torchmetrics.functional.audio import short_time_objective_intelligibility

        with warnings.catch_warnings(record=True) as caught:  # pystoi warns and returns 1e-5 when it cannot score
            warnings.simplefilter("always")
            stoi = float(short_time_objective_intelligibility(adversarial, clean, rate))
        if any("Not enough STFT frames" in str(w.message) for w in caught):
            stoi = math.nan
    return [pesq, stoi]


def feature_rho(frames_clean: Tensor, frames_adversarial: Tensor) -> float:
    """``|F(x + delta) - F(x)| / |F(x)|`` over a trial's feature frames ``[N, D]``: the perturbation a waveform
    attack induces in an i-vector victim's MFCC domain (for a feature-domain attack, its own rho)."""
    delta = (frames_adversarial - frames_clean).double()
    return float(delta.norm() / frames_clean.double().norm().clamp(min=1e-12))


def summarize(col: dict[str, Tensor], threshold: float) -> dict[str, float]:
    """Aggregates of a table of trials (``{column: [N]}``) at the clean threshold (accept <=> score >= θ).

    ``success_rate`` and the perturbation statistics cover the trials decided correctly when clean (ρ mean, SNR,
    ‖δ‖∞, PESQ and STOI over the successful ones; NaN values of PESQ / STOI are left out of their means).
    ``rho_median`` is over every attacked trial with a failure counted as ρ = ∞ (the lower median, as every
    comparison uses it: ∞ when more than half fail), so a method cannot lower it by failing on hard trials;
    ``rho_median_successes`` is the lower median over the successful ones only. ``rho_feat_median``: the same
    all-trials median of the MFCC-domain ρ (NaN when the victim has no feature front-end).
    ``far`` is the fraction of non-target trials accepted after the attack, ``frr`` the fraction of target trials
    rejected after it (every trial of the class), ``clean_far`` / ``clean_frr`` the same before. No EER after the
    attack: an attack that pushes both classes across the threshold makes it ≈ 1 by construction.
    """
    attacked = col["clean_correct"] > 0
    won = attacked & (col["success"] > 0)
    target = col["label"] == 1
    nontarget = col["label"] == 0

    def mean(x: Tensor) -> float:
        x = x[~x.isnan()]
        return float(x.mean()) if len(x) else float("nan")

    def rate(decided: Tensor, mask: Tensor) -> float:
        return float(decided[mask].float().mean()) if mask.any() else float("nan")

    return {
        "trials": float(len(col["index"])),
        "attacked": float(attacked.sum()),
        "success_rate": rate(col["success"] > 0, attacked),
        "rho_mean": mean(col["rho"][won]),
        "rho_median": float(torch.where(won, col["rho"], math.inf)[attacked].median()) if attacked.any() else math.nan,
        "rho_median_successes": float(col["rho"][won].median()) if won.any() else float("nan"),
        "rho_feat_median": lower_median(torch.where(won, col["rho_feat"], math.inf)[attacked]),
        "snr_db_mean": mean(col["snr_db"][won]),
        "linf_mean": mean(col["linf"][won]),
        "pesq_mean": mean(col["pesq"][won]),
        "stoi_mean": mean(col["stoi"][won]),
        "iterations_mean": mean(col["iterations"][attacked]),
        "grad_evals_mean": mean(col["grad_evals"][attacked]),
        "wall_s_mean": mean(col["wall_s"][attacked]),
        "clean_far": rate(col["score_before"] >= threshold, nontarget),
        "clean_frr": rate(col["score_before"] < threshold, target),
        "far": rate(col["score_after"] >= threshold, nontarget),
        "frr": rate(col["score_after"] < threshold, target),
    }


def lower_median(values: Tensor) -> float:
    """The lower median, NaN when empty or when any value is NaN (no feature front-end)."""
    if not len(values) or values.isnan().any():
        return math.nan
    return float(values.median())


def perturbation_columns(clean: Tensor, adversarial: Tensor) -> dict[str, float]:
    """``rho`` (``|delta| / |x|``), ``snr_db`` and ``linf`` of one trial's signal (any shape), in float64."""
    delta = (adversarial - clean).flatten().double()
    rho = float(delta.norm() / clean.double().norm().clamp(min=1e-12))
    return {"rho": rho, "snr_db": -20 * math.log10(rho) if rho > 0 else math.inf, "linf": float(delta.abs().max())}


def table(rows: list[dict[str, float]]) -> dict[str, Tensor]:
    """Per-trial rows (dicts over ``COLUMNS``) as a table of trials: float64 columns ``[N]``, in ``COLUMNS`` order."""
    return {name: torch.tensor([row[name] for row in rows], dtype=torch.float64) for name in COLUMNS}
