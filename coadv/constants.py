"""Names several tools share: methods, directions, attacks, victims, quiet CLI flags, folders."""

from __future__ import annotations

from pathlib import Path

import configs as _configs

CONFIGS = Path(_configs.__file__).resolve().parent  # the shipped YAML experiments (package data when installed)

METHODS = {"cyclegan": "CycleGAN", "cr_cyclegan": "CR-CycleGAN", "accr": "ACCR"}
DIRECTIONS = {
    "m2mm": ("mnist", "mnist_m"),
    "mm2m": ("mnist_m", "mnist"),
    "m2s": ("mnist", "svhn"),
    "s2m": ("svhn", "mnist"),
    "m2u": ("mnist", "usps"),
    "u2m": ("usps", "mnist"),
}
ARROWS = {"mnist": "M", "mnist_m": "MM", "svhn": "S", "usps": "U"}
ATTACKS = (
    "fgsm",
    "bim",
    "pgd_linf",
    "pgd_l2",
    "cw",
    "ddn",
    "fmn",
    "mfcc_ivec",
    "gauss_newton",
    "ssr",
    "ssr_lin",
    "qn_lbfgs",
    "qn_bfgs",
)
VICTIMS = ("ivector", "seresnet34", "ecapa", "ge2e")
# runs launched by a tool show the tool's own progress bar (one line per cell / attack / trial) instead
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def config_path(path: str | Path) -> Path:
    """``path`` as given when it exists; else the shipped config of that name (``configs/...`` from any folder)."""
    given = Path(path)
    if given.exists() or given.is_absolute():
        return given
    parts = given.parts[1:] if given.parts and given.parts[0] == "configs" else given.parts
    shipped = CONFIGS.joinpath(*parts)
    return shipped if shipped.exists() else given
