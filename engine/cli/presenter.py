"""Presenters: the destination of a command's results, a terminal or (in the kernel) a notebook.

The CLI's commands never print: they hand text, views and build events to
a presenter. `TerminalPresenter` writes them to stdout and stderr; the
kernel passes its own presenter that streams text into the cell and draws
widgets for views.
"""

from __future__ import annotations

import contextlib
import os
import sys

from layerlab.engine.build import events
from layerlab.engine.digest import short_id
from layerlab.engine.registry.progress import TransferDone, plain_text


def _discard():
    return open(os.devnull, "w", encoding="utf-8")


class TerminalPresenter:
    """Writes everything to the process's stdout and stderr."""

    def __init__(self, stdout=None, stderr=None):
        # Python sets sys.stdout to None when fd 1 was closed at start-up
        # (`layerlab images >&-`); the output then goes nowhere.
        self.stdout = stdout or sys.stdout or _discard()
        self.stderr = stderr or sys.stderr or _discard()
        self.live_transfer = None

    def write(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def error(self, text: str) -> None:
        self.stderr.write(text)
        self.stderr.flush()

    def show(self, view) -> None:
        self.write(view.text())

    def build_event(self, event) -> None:
        text = build_event_text(event)
        if text:
            self.write(text)

    def transfer_event(self, event) -> None:
        """Draw a pull or push event: live lines on a TTY, else only the status lines Docker prints."""
        if not _is_tty(self.stdout):
            text = plain_text(event)
            if text:
                self.write(text)
            return

        if self.live_transfer is None:
            from layerlab.engine.cli.transfer_progress import LiveTransferLines

            self.live_transfer = LiveTransferLines(self.stdout)
        self.live_transfer.handle(event)
        if isinstance(event, TransferDone):
            self.live_transfer = None

    @contextlib.contextmanager
    def container_stdio(self):
        """Yield the file descriptors a foreground container writes to; None inherits ours."""
        self.stdout.flush()
        self.stderr.flush()
        yield None, None


def _is_tty(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def build_event_text(event) -> str:
    """Return the lines Docker's classic builder prints for `event` (empty for silent events)."""
    match event:
        case events.StepStarted(index=index, total=total, instruction=instruction):
            return f"Step {index}/{total} : {instruction}\n"
        case events.StepCached():
            return " ---> Using cache\n"
        case events.ContainerStarted(container_id=container_id):
            return f" ---> Running in {short_id(container_id)}\n"
        case events.OutputLine(text=text):
            return text + "\n"
        case events.StepDone(image_id=image_id):
            return f" ---> {short_id(image_id)}\n"
        case events.BuildWarning(message=message):
            return f"[WARNING]: {message}\n"
        case events.BuildDone(image_id=image_id, tags=tags):
            lines = [f"Successfully built {short_id(image_id)}\n"]
            lines += [f"Successfully tagged {tag}\n" for tag in tags]
            return "".join(lines)
    return ""
