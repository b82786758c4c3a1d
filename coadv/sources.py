"""The attack runs' source files as they were when this process started. An ``--in-process`` comparison runs the
code imported then, so its reuse hashes read these bytes, not the files as edited since (a run of the old code
must not be stamped as the new code's). Imported by ``coadv/__init__``: before any attack module is."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# what decides every attack run's numbers besides the attack's own modules (those are found per config)
ATTACK_CODE = (
    "attacks/__init__.py",
    "attacks/base.py",
    "attacks/objective.py",
    "lightning_modules/attack.py",
    "lightning_modules/attack_metrics.py",
    "nets/speaker",
    "datamodules/__init__.py",
    "datamodules/audio.py",
    "datamodules/librispeech.py",
    "datamodules/sampling.py",
    "datamodules/synth_speech.py",
    "datamodules/trials.py",
    "datamodules/voxceleb.py",
    "callbacks/attack_report.py",
    "lightning_modules/trial_scoring.py",
    "lightning_modules/victim_loading.py",
)


def source_files(names: tuple[str, ...] | list[str]) -> list[Path]:
    """The ``.py`` files of ``names`` (files or folders, relative to the project root), sorted per folder."""
    out = []
    for name in names:
        path = ROOT / name
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return out


AT_START: dict[Path, bytes] = {f: f.read_bytes() for f in source_files([*ATTACK_CODE, "attacks"]) if f.is_file()}


def source_bytes(file: Path, at_start: bool = False) -> bytes:
    """The file's bytes now, or with ``at_start`` as this process first read them (a file added since: now)."""
    if at_start and file in AT_START:
        return AT_START[file]
    return file.read_bytes()


def code_of(source: bytes) -> bytes:
    """What a Python source executes: its syntax tree without docstrings, comments, layout or line numbers (a
    reformat or a docstring edit keeps a finished run reusable; a code change does not). Text that does not parse
    is taken as it is."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            if isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()
