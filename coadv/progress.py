"""Feedback for the tools' long loops: tqdm bars with ETA, Lightning's chatter kept out of them, end summaries."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

# Lightning's per-run INFO lines ("GPU available", "Seed set to", ...) would push a tool's bar off its line
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")


def bar(total: int, desc: str, unit: str, initial: int = 0) -> tqdm:
    """A bar over a tool's items; ``initial`` items already done (reused) do not count in the rate or ETA."""
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, smoothing=0.1)


def meter(done: int, total: int, elapsed: float, unit: str, desc: str, reused: int = 0) -> str:
    """One printed line in tqdm's format (``desc: 27%|██▋ | 3/11 [12:00<32:00, 240.00s/attack]``), for loops whose
    items print their own progress (a child process's bar) and would garble a live bar."""
    return tqdm.format_meter(done, total, elapsed, prefix=desc, unit=unit, initial=reused, ncols=100)


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's INFO lines off for the duration (warnings still show)."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def minutes(seconds: float) -> str:
    """``75.0`` -> ``1 min 15 s``; ``12.3`` -> ``12 s``."""
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def summary(title: str, rows: list[tuple[str, object]]) -> str:
    """A short block for the end of a command: a title line, then aligned ``key  value`` lines."""
    width = max((len(key) for key, _ in rows), default=0)
    return "\n".join([f"== {title} ==", *(f"{key:<{width}}  {value}" for key, value in rows)])
