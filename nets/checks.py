"""Argument checks for constructors: one ``ValueError`` naming the argument and the value it got.

>>> at_least("lambda_rec", -5.0, 0)
Traceback (most recent call last):
ValueError: lambda_rec must be >= 0, got -5.0
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def at_least(name: str, value: float, low: float) -> None:
    """``value >= low`` (NaN fails too)."""
    if not value >= low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")


def positive(name: str, value: float) -> None:
    """``value > 0`` (NaN fails too)."""
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def within(name: str, value: float, low: float, high: float, *, open_high: bool = False) -> None:
    """``low <= value <= high`` (``< high`` with ``open_high``)."""
    if not (low <= value < high if open_high else low <= value <= high):
        raise ValueError(f"{name} must be in [{low}, {high}{')' if open_high else ']'}, got {value!r}")


def one_of(name: str, value: object, choices: Collection[object]) -> None:
    """``value in choices``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")


def check_arg(name: str, value: Any, ok: bool, expected: str) -> None:
    """Raise ``ValueError("name=value: expected ...")`` unless ``ok`` (ranges the helpers above do not express)."""
    if not ok:
        raise ValueError(f"{name}={value!r}: expected {expected}")
