"""Container logs in the format of Docker's json-file driver: `containers/<id>/log`.

Each line of output is one JSON object, `{"log": "text\\n", "stream":
"stdout", "time": "2024-01-02T03:04:05.123456789Z"}`, appended by the
container's monitor. A line without a newline at the end is stored as it
arrived, so `logs` prints it back without inventing one.
"""

from __future__ import annotations

import collections
import datetime
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterator

log = logging.getLogger(__name__)

LOG_FILE = "log"

# Docker's json-file driver splits lines longer than 16 KiB into several entries.
MAX_ENTRY_BYTES = 16 * 1024

_FOLLOW_POLL_SECONDS = 0.1


@dataclass
class LogEntry:
    """One line of container output."""

    text: str
    stream: str  # "stdout" or "stderr"
    time: str  # RFC 3339 with nanoseconds, UTC

    def with_timestamp(self) -> str:
        """Return the line as `logs --timestamps` prints it."""
        return f"{self.time} {self.text}"


def log_path(container_path: str) -> str:
    return os.path.join(container_path, LOG_FILE)


def timestamp_now() -> str:
    """Return the current time as RFC 3339 with nanoseconds, as Docker writes it."""
    now_ns = time.time_ns()
    seconds, nanoseconds = divmod(now_ns, 1_000_000_000)
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanoseconds:09d}Z"


class LogWriter:
    """Splits a stream of output into lines and appends them to the log file."""

    def __init__(self, path: str):
        # O_APPEND keeps entries whole when a restarted container appends to the same file.
        self.file = open(path, "ab", buffering=0)
        self.pending = {"stdout": b"", "stderr": b""}

    def feed(self, stream: str, data: bytes) -> None:
        """Add output read from `stream`; every complete line is written at once."""
        buffer = self.pending[stream] + data
        while True:
            end = buffer.find(b"\n")
            if end < 0 and len(buffer) < MAX_ENTRY_BYTES:
                break
            cut = end + 1 if 0 <= end < MAX_ENTRY_BYTES else MAX_ENTRY_BYTES
            self._write(stream, buffer[:cut])
            buffer = buffer[cut:]
        self.pending[stream] = buffer

    def flush(self, stream: str) -> None:
        """Write a last line that has no newline (the stream ended)."""
        if self.pending[stream]:
            self._write(stream, self.pending[stream])
            self.pending[stream] = b""

    def close(self) -> None:
        for stream in self.pending:
            self.flush(stream)
        self.file.close()

    def _write(self, stream: str, line: bytes) -> None:
        entry = {"log": line.decode("utf-8", "replace"), "stream": stream, "time": timestamp_now()}
        self.file.write(json.dumps(entry).encode() + b"\n")


def read_entries(container_path: str, tail: int | None = None) -> list[LogEntry]:
    """Return the logged lines, only the last `tail` of them unless it is None."""
    path = log_path(container_path)
    try:
        with open(path, "rb") as file:
            lines = collections.deque(file, maxlen=tail) if tail is not None else list(file)
    except FileNotFoundError:
        return []
    return [entry for entry in map(_parse, lines) if entry is not None]


def follow_entries(container_path: str, tail: int | None, running: Callable[[], bool]) -> Iterator[LogEntry]:
    """Yield the logged lines, then new ones as they are written, until `running()` turns False."""
    path = log_path(container_path)
    with _open_or_wait(path, running) as file:
        if file is None:
            return
        backlog = collections.deque(file, maxlen=tail) if tail is not None else list(file)
        for line in backlog:
            entry = _parse(line)
            if entry is not None:
                yield entry

        partial = b""
        while True:
            # Read what is there before checking, so lines written just before the exit are not lost.
            alive = running()
            chunk = file.read()
            partial += chunk
            *complete, partial = partial.split(b"\n")
            for line in complete:
                entry = _parse(line)
                if entry is not None:
                    yield entry
            if not alive:
                return
            if not chunk:
                time.sleep(_FOLLOW_POLL_SECONDS)


class _NoFile:
    def __enter__(self):
        return None

    def __exit__(self, *exc_info):
        return False


def _open_or_wait(path: str, running: Callable[[], bool]):
    # A just-created container may not have written its log file yet.
    while True:
        try:
            return open(path, "rb")
        except FileNotFoundError:
            if not running():
                return _NoFile()
            time.sleep(_FOLLOW_POLL_SECONDS)


def parse_tail(value: str) -> int | None:
    """Parse `--tail`: a line count, or "all" (None)."""
    from layerlab.engine.errors import InvalidArgumentError

    if value == "all":
        return None
    try:
        count = int(value)
    except ValueError:
        raise InvalidArgumentError(f"invalid --tail value {value!r}: expected a number of lines or \"all\"") from None
    # Docker treats a negative count as "all".
    return None if count < 0 else count


def _parse(raw: bytes) -> LogEntry | None:
    try:
        doc = json.loads(raw)
        return LogEntry(doc["log"], doc["stream"], doc["time"])
    except (ValueError, KeyError, TypeError):
        log.debug("skipping an unreadable log line: %r", raw[:80])
        return None
