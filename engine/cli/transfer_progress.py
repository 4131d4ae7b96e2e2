"""Live per-layer lines for pull and push on a terminal, redrawn in place as Docker does.

Each layer gets one line when it first appears. Later events for that layer
move the cursor up to its line (`ESC [ n A`), clear it (`ESC [ 2 K`), write
the new state and move back down (`ESC [ n B`). Lines are cut to the
terminal's width, because a wrapped line would break the cursor arithmetic.
"""

from __future__ import annotations

import os
import shutil

from layerlab.engine.humanize import human_size
from layerlab.engine.registry.progress import LayerProgress, TransferEvent, plain_text

MAX_BAR_WIDTH = 50
# A narrower bar is too coarse to read: below this width the line shows only the byte counts.
MIN_BAR_WIDTH = 10
DEFAULT_COLUMNS = 80


def layer_line(event: LayerProgress, columns: int = DEFAULT_COLUMNS) -> str:
    """Return a layer's line: `id: Downloading [=====>     ]  12.3MB/45.6MB`, or `id: action`."""
    head = f"{event.layer}: {event.action}"
    if event.current is None:
        return head
    if not event.total:
        return f"{head} {human_size(event.current)}"

    counts = f"{human_size(event.current):>7}/{human_size(event.total)}"
    # The line is head, " [", the bar, "] " and the counts.
    width = min(MAX_BAR_WIDTH, columns - len(head) - len(counts) - 5)
    if width < MIN_BAR_WIDTH:
        return f"{head} {counts}"
    return f"{head} [{progress_bar(event.current, event.total, width)}] {counts}"


def progress_bar(current: int, total: int, width: int) -> str:
    """Return `width` characters: `=` for the part done, `>` at its tip and spaces for the rest."""
    filled = min(width, current * width // total) if total > 0 else width
    if filled >= width:
        return "=" * width
    return "=" * filled + ">" + " " * (width - filled - 1)


class LiveTransferLines:
    """Draws the events of one transfer on `stream`, a terminal."""

    def __init__(self, stream, columns: int | None = None):
        self.stream = stream
        # A terminal that reports 0 columns (a pty from `script`, some CI runners) has an unknown width.
        self.columns = columns if columns and columns > 0 else _terminal_columns(stream)

        # The line each layer was first drawn on, counted from the first line written.
        self.layer_rows: dict[str, int] = {}
        self.lines_written = 0

    def handle(self, event: TransferEvent) -> None:
        if isinstance(event, LayerProgress):
            self._draw_layer(event.layer, layer_line(event, self.columns))
        else:
            text = plain_text(event)
            self.stream.write(text)
            self.lines_written += text.count("\n")
        self.stream.flush()

    def _draw_layer(self, layer: str, line: str) -> None:
        line = line[:self.columns - 1]
        row = self.layer_rows.get(layer)
        if row is None:
            self.layer_rows[layer] = self.lines_written
            self.stream.write(line + "\n")
            self.lines_written += 1
            return

        up = self.lines_written - row
        self.stream.write(f"\x1b[{up}A\r\x1b[2K{line}\x1b[{up}B\r")


def _terminal_columns(stream) -> int:
    """Return the terminal's width, or DEFAULT_COLUMNS when it is unknown (not a terminal, or 0 columns)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        columns = shutil.get_terminal_size((DEFAULT_COLUMNS, 24)).columns
    return columns if columns > 0 else DEFAULT_COLUMNS
