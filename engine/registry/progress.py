"""Progress events of a pull or push, and their text as Docker prints it without a TTY.

The registry code reports what it does as events, and each presenter draws
them: the terminal as plain lines or live bars, the kernel as a widget.
Byte counts are throttled per layer (see `ByteProgress`), so a fast local
registry does not flood a notebook with widget updates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# Minimum seconds between two byte-count events of one layer.
UPDATE_INTERVAL = 0.1


@dataclass(frozen=True)
class TransferStarted:
    """The first line of a transfer, such as `latest: Pulling from figlet`."""

    message: str


@dataclass(frozen=True)
class LayerProgress:
    """A layer's state: a status change when `current` is None, else a byte count.

    `layer` is the short (12-digit) ID. `action` is Docker's word for the
    state: "Pulling fs layer", "Downloading", "Pull complete", "Already exists",
    "Preparing", "Pushing", "Pushed", "Layer already exists" or
    "Mounted from REPOSITORY". `total` is None when the size is unknown.
    """

    layer: str
    action: str
    current: int | None = None
    total: int | None = None

    @property
    def is_status(self) -> bool:
        return self.current is None


@dataclass(frozen=True)
class TransferDone:
    """The closing lines, such as `Digest: sha256:…` and `Status: Downloaded newer image for …`."""

    lines: tuple[str, ...]


TransferEvent = TransferStarted | LayerProgress | TransferDone


def plain_text(event: TransferEvent) -> str:
    """Return the lines Docker prints for `event` when stdout is not a TTY (empty for byte counts)."""
    match event:
        case TransferStarted(message=message):
            return message + "\n"
        case LayerProgress(layer=layer, action=action) if event.is_status:
            return f"{layer}: {action}\n"
        case TransferDone(lines=lines):
            return "".join(line + "\n" for line in lines)
    return ""


def event_sink(progress: Callable[[str], None] | None,
               events: Callable[[TransferEvent], None] | None) -> Callable[[TransferEvent], None]:
    """Return a function that sends each event to `events` and its plain text to `progress`."""

    def send(event: TransferEvent) -> None:
        if events is not None:
            events(event)
        if progress is not None:
            text = plain_text(event)
            if text:
                progress(text)

    return send


class ByteProgress:
    """Sends `LayerProgress` byte counts of one layer, at most one per `interval` seconds.

    The first count and the count that reaches `total` are always sent, so
    a presenter receives the start and end of every layer, however fast.
    """

    def __init__(self, send: Callable[[TransferEvent], None], layer: str, action: str, total: int | None,
                 *, interval: float = UPDATE_INTERVAL, clock: Callable[[], float] = time.monotonic):
        self.send = send
        self.layer = layer
        self.action = action
        self.total = total
        self.interval = interval
        self.clock = clock
        self.current = 0
        self.last_sent: float | None = None

    def update(self, current: int) -> None:
        self.current = current
        now = self.clock()
        done = self.total is not None and current >= self.total
        if not done and self.last_sent is not None and now - self.last_sent < self.interval:
            return
        self.last_sent = now
        self.send(LayerProgress(self.layer, self.action, current, self.total))

    def advance(self, count: int) -> None:
        self.update(self.current + count)


class CountingReader:
    """A binary file wrapper, read from its start, that reports its read position to a `ByteProgress`.

    `seek` is passed through, so a request that is sent again from the start
    (the registry client rewinds bodies for retries) counts from zero again.
    """

    def __init__(self, source, progress: ByteProgress):
        self.source = source
        self.progress = progress
        self.position = 0

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        if data:
            self.position += len(data)
            self.progress.update(self.position)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = self.source.seek(offset, whence)
        return self.position

    def tell(self) -> int:
        return self.position

    def close(self) -> None:
        self.source.close()


__all__ = [
    "ByteProgress",
    "CountingReader",
    "LayerProgress",
    "TransferDone",
    "TransferEvent",
    "TransferStarted",
    "event_sink",
    "plain_text",
]
