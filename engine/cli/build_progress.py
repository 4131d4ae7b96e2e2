"""`build --progress`: the printers that turn build events into terminal text.

- `auto`: the classic builder's lines (`Step 2/4 : RUN ...`) when stdout is
  not a terminal, the compact live view when it is.
- `plain`: BuildKit's plain style: `#3 [2/4] RUN ...`, every output line as
  `#3 0.512 text` (seconds since the step started), `#3 CACHED` or
  `#3 DONE 0.5s`.
- `tty`: one line per step that shows the step's latest output while it
  runs and its time (or CACHED) when it is done.
- `rawjson`: one JSON object per event, with the event's dataclass fields.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time

from layerlab.engine.build import events

CLEAR_LINE = "\r\x1b[K"


class PlainPrinter:
    """Prints events in BuildKit's `--progress=plain` style."""

    def __init__(self, write, clock=time.monotonic):
        self.write = write
        self.clock = clock
        self.started: dict[int, float] = {}
        self.last_index = 0

    def __call__(self, event) -> None:
        match event:
            case events.StepStarted(index=index, total=total, instruction=instruction):
                self.started[index] = self.clock()
                self.last_index = index
                self.write(f"#{index} [{index}/{total}] {instruction}\n")
            case events.StepCached(index=index):
                self.write(f"#{index} CACHED\n")
            case events.OutputLine(index=index, text=text):
                now = self.clock()
                elapsed = now - self.started.get(index, now)
                self.write(f"#{index} {elapsed:.3f} {text}\n")
            case events.StepDone(index=index, cached=False, seconds=seconds, cache_miss_reason=reason):
                self.write(f"#{index} DONE {seconds:.1f}s{_miss_suffix(reason)}\n")
            case events.BuildWarning(index=index, message=message):
                prefix = f"#{index} " if index is not None else ""
                self.write(f"{prefix}WARNING: {message}\n")
            case events.BuildDone(image_id=image_id, tags=tags):
                step = self.last_index + 1
                self.write(f"#{step} writing image {image_id} done\n")
                for tag in tags:
                    self.write(f"#{step} naming to {tag} done\n")


class TtyPrinter:
    """Draws one line per step, rewriting it with the step's latest output until the step is done."""

    def __init__(self, write, width: int | None = None):
        self.write = write
        self.width = width or shutil.get_terminal_size((100, 24)).columns
        self.title = ""

    def _live(self, text: str) -> None:
        self.write(CLEAR_LINE + text[: self.width - 1])

    def __call__(self, event) -> None:
        match event:
            case events.StepStarted(index=index, total=total, instruction=instruction):
                self.title = f"=> [{index}/{total}] {instruction}"
                self._live(self.title)
            case events.OutputLine(text=text):
                self._live(f"{self.title} | {text}")
            case events.StepDone(cached=cached, seconds=seconds, cache_miss_reason=reason):
                result = "CACHED" if cached else f"{seconds:.1f}s{_miss_suffix(reason)}"
                self._live(f"{self.title}  {result}")
                self.write("\n")
            case events.BuildWarning(message=message):
                self.write(f"{CLEAR_LINE}WARNING: {message}\n")
                self._live(self.title)
            case events.BuildDone(image_id=image_id, tags=tags):
                self.write(f"=> writing image {image_id}\n")
                for tag in tags:
                    self.write(f"=> naming to {tag}\n")


def _miss_suffix(reason: str) -> str:
    """Return why a step ran instead of coming from the cache, for the end of its line."""
    return f" (cache miss: {reason})" if reason else ""


def rawjson_printer(write):
    def emit(event) -> None:
        record = {"event": type(event).__name__, **dataclasses.asdict(event)}
        write(json.dumps(record) + "\n")

    return emit


def event_printer(progress: str, presenter):
    """Return the build event callback for a --progress value and the presenter's terminal."""
    if progress == "rawjson":
        return rawjson_printer(presenter.write)
    if progress == "plain":
        return PlainPrinter(presenter.write)
    stdout = getattr(presenter, "stdout", None)
    if progress == "tty" or (progress == "auto" and stdout is not None and stdout.isatty()):
        return TtyPrinter(presenter.write)
    return presenter.build_event


def failure_text(error) -> str:
    """Return a failed RUN's error with its last lines of output under it, framed as BuildKit frames them."""
    text = f"layerlab: {error}\n"
    if getattr(error, "last_lines", None):
        text += "------\n" + "".join(f" > {line}\n" for line in error.last_lines) + "------\n"
    return text
