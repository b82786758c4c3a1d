"""Markdown pipe tables, the one builder every table of the project uses (attack reports, study, attack comparison,
tuning, demo)."""

from __future__ import annotations

from typing import Any


def cell(value: Any) -> str:
    """A table cell: floats at 4 significant digits, anything else as ``str`` gives it."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def table_lines(header: list[str], rows: list[list[Any]]) -> list[str]:
    """The lines of a pipe table: the header, the rule, then one line per row."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A pipe table as text, ending in a newline."""
    return "\n".join(table_lines(header, rows)) + "\n"
