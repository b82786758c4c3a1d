"""The composed attack configs: ``configs/attack/base.yaml`` (trainer, report, the attack module), one file per
attack (``<attack>.yaml``: class and default arguments), one per victim (``victim/<victim>.yaml``: checkpoint and
data), and ``tuned/<attack>_<victim>.yaml`` where a victim's tuned values differ from the attack's defaults.
LightningCLI merges them in this order (``-c`` after ``-c``); a run is named ``<attack>_<victim>``."""

from __future__ import annotations

from pathlib import Path

import yaml

from coadv.constants import CONFIGS, VICTIMS

ROOT = CONFIGS / "attack"
ONLY = {"mfcc_ivec": ("ivector",)}  # attacks that need a victim's own front-end (MFCC-ivec: the i-vector's MFCCs)


def split(name: str) -> tuple[str, str]:
    """``ssr_ecapa`` -> (``ssr``, ``ecapa``)."""
    attack, _, victim = name.rpartition("_")
    return attack, victim


def exists(attack: str, victim: str) -> bool:
    """Whether the attack has a config and applies to the victim."""
    applies = victim in ONLY.get(attack, (victim,))
    return applies and (ROOT / f"{attack}.yaml").is_file() and (ROOT / "victim" / f"{victim}.yaml").is_file()


def names() -> list[str]:
    """Every ``<attack>_<victim>`` the files compose, attacks in name order."""
    attacks = sorted(p.stem for p in ROOT.glob("*.yaml") if p.stem != "base")
    return [f"{a}_{v}" for a in attacks for v in VICTIMS if exists(a, v)]


def config_files(attack: str, victim: str) -> list[Path]:
    """The files of one run, in merge order."""
    if not exists(attack, victim):
        raise SystemExit(f"no attack config for {attack} against {victim} (configs/attack/{attack}.yaml, victim/)")
    tuned = ROOT / "tuned" / f"{attack}_{victim}.yaml"
    return [ROOT / "base.yaml", ROOT / f"{attack}.yaml", ROOT / "victim" / f"{victim}.yaml"] + [tuned] * tuned.is_file()


def args(attack: str, victim: str) -> list[str]:
    """``-c <file>`` for each file of the run."""
    return [arg for path in config_files(attack, victim) for arg in ("-c", str(path))]


def text(attack: str, victim: str) -> str:
    """The files' texts, concatenated (what a reuse record compares)."""
    return "".join(path.read_text() for path in config_files(attack, victim))


def merge(into: dict, other: dict) -> dict:
    """``other`` merged into a copy of ``into``, mappings key by key (a new ``class_path`` replaces the block)."""
    out = dict(into)
    for key, value in other.items():
        old = out.get(key)
        nested = isinstance(value, dict) and isinstance(old, dict)
        out[key] = (
            merge(old, value)
            if nested and value.get("class_path", old.get("class_path")) == old.get("class_path")
            else value
        )
    return out


def merged(attack: str, victim: str) -> dict:
    """The run's config as the files merge (plain YAML: no defaults, no interpolation)."""
    out: dict = {}
    for path in config_files(attack, victim):
        out = merge(out, yaml.safe_load(path.read_text()) or {})
    return out
