"""Sizes and durations in the words Docker's tables use (go-units)."""

from __future__ import annotations

import datetime

_DECIMAL_UNITS = ["B", "kB", "MB", "GB", "TB", "PB"]


def human_size(size: float) -> str:
    """Format bytes with decimal units and 3 significant digits: `1.23MB`, `4.1kB`, `0B`."""
    unit = 0
    while size >= 1000 and unit < len(_DECIMAL_UNITS) - 1:
        size /= 1000
        unit += 1
    return f"{size:.3g}{_DECIMAL_UNITS[unit]}"


def human_duration(seconds: float) -> str:
    """Format an elapsed time as go-units' HumanDuration does: `2 minutes`, `About an hour`."""
    if seconds < 1:
        return "Less than a second"
    if int(seconds) == 1:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def time_ago(moment: datetime.datetime, now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return human_duration(max((now - moment).total_seconds(), 0)) + " ago"


def ellipsis(text: str, width: int) -> str:
    """Shorten `text` to `width` characters, ending in `…` when cut, as Docker's tables do."""
    if len(text) <= width:
        return text
    return text[: width - 1] + "…"


def table(header: list[str], rows: list[list[str]]) -> str:
    """Lay out columns as Docker's tabwriter does: width at least 10, 3 spaces of padding."""
    widths = [len(cell) for cell in header]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row)]
    widths = [max(width + 3, 10) for width in widths]

    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths)]
        lines.append(("".join(cells) + row[-1]).rstrip())
    return "\n".join(lines) + "\n"
