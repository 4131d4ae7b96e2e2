"""Per-layer progress of pull and push: typed events, throttling, and the terminal's live lines."""

import io
import os
import re

from layerlab.engine.api import Engine
from layerlab.engine.cli.presenter import TerminalPresenter
from layerlab.engine.cli.transfer_progress import DEFAULT_COLUMNS, LiveTransferLines, layer_line, progress_bar
from layerlab.engine.registry.progress import (
    ByteProgress,
    LayerProgress,
    TransferDone,
    TransferStarted,
    plain_text,
)
from layerlab.engine.registry.pull import pull
from layerlab.engine.registry.push import push

CURSOR_MOVE = re.compile(r"\x1b\[(\d+)([AB])|\x1b\[2K|\r|\n|[^\x1b\r\n]+")


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def screen_lines(output: str) -> list[str]:
    """Replay cursor-up, cursor-down, clear-line and carriage returns; return the lines left on screen."""
    lines = [""]
    row = 0
    for match in CURSOR_MOVE.finditer(output):
        token = match.group(0)
        if match.group(2) == "A":
            row -= int(match.group(1))
        elif match.group(2) == "B":
            row += int(match.group(1))
        elif token == "\x1b[2K":
            lines[row] = ""
        elif token == "\r":
            continue
        elif token == "\n":
            row += 1
            if row == len(lines):
                lines.append("")
        else:
            lines[row] += token
    assert row == len(lines) - 1, "the cursor did not end below the last line"
    return lines[:-1]


def layer_rows(lines):
    return [line for line in lines if re.match(r"[0-9a-f]{12}: ", line)]


def test_push_then_pull_draw_live_bars(engine, busybox, registry, tmp_path):
    name = f"{registry.host}/lab/progress:1"
    engine.tag("busybox", name)
    pushed = FakeTTY()
    push(engine, name, events=TerminalPresenter(stdout=pushed).transfer_event)

    pulled = FakeTTY()
    pull(Engine(str(tmp_path / "other")), name, events=TerminalPresenter(stdout=pulled).transfer_event)

    assert "Pushing [" in pushed.getvalue()
    push_screen = screen_lines(pushed.getvalue())
    assert push_screen[0] == f"The push refers to repository [{registry.host}/lab/progress]"
    assert layer_rows(push_screen)
    assert all(line.endswith(": Pushed") for line in layer_rows(push_screen)), push_screen
    assert push_screen[-1].startswith("1: digest: sha256:")

    assert "Downloading [" in pulled.getvalue()
    pull_screen = screen_lines(pulled.getvalue())
    assert pull_screen[0] == "1: Pulling from lab/progress"
    assert layer_rows(pull_screen)
    assert all(line.endswith(": Pull complete") for line in layer_rows(pull_screen)), pull_screen
    assert pull_screen[-2] == f"Status: Downloaded newer image for {name}"


def test_pull_without_tty_prints_status_lines_only(engine, busybox, registry, tmp_path):
    name = f"{registry.host}/lab/plain:1"
    engine.tag("busybox", name)
    push(engine, name)
    output = io.StringIO()

    result = pull(Engine(str(tmp_path / "other")), name, events=TerminalPresenter(stdout=output).transfer_event)

    expected = (
        "1: Pulling from lab/plain\n"
        r"(?P<layer>[0-9a-f]{12}): Pulling fs layer\n"
        r"(?P=layer): Pull complete\n"
        f"Digest: {result.manifest_digest}\n"
        f"Status: Downloaded newer image for {re.escape(name)}\n"
        f"{re.escape(name)}\n"
    )
    assert re.fullmatch(expected, output.getvalue()), output.getvalue()


def test_push_events_report_bytes_up_to_size(engine, busybox, registry):
    name = f"{registry.host}/lab/bytes:1"
    engine.tag("busybox", name)
    events = []

    push(engine, name, events=events.append)

    counts = [event for event in events if isinstance(event, LayerProgress) and not event.is_status]
    assert counts
    assert counts[-1].current == counts[-1].total
    assert isinstance(events[0], TransferStarted)
    assert isinstance(events[-1], TransferDone)


def test_chunked_push_reports_each_chunk(engine, busybox, registry):
    name = f"{registry.host}/lab/chunks:1"
    engine.tag("busybox", name)
    events = []

    push(engine, name, chunk_size=64 * 1024, events=events.append)

    counts = [event.current for event in events if isinstance(event, LayerProgress) and not event.is_status]
    assert len(counts) >= 2
    assert counts == sorted(counts)


def test_byte_progress_throttles_updates():
    sent = []
    now = [0.0]
    progress = ByteProgress(sent.append, "a1b2c3d4e5f6", "Downloading", 1000, interval=0.1, clock=lambda: now[0])

    progress.update(100)
    now[0] = 0.05
    progress.update(200)
    now[0] = 0.2
    progress.update(300)
    progress.update(1000)

    assert [event.current for event in sent] == [100, 300, 1000]


def test_plain_text_skips_byte_counts():
    assert plain_text(LayerProgress("a1b2c3d4e5f6", "Downloading", 10, 100)) == ""
    assert plain_text(LayerProgress("a1b2c3d4e5f6", "Pull complete")) == "a1b2c3d4e5f6: Pull complete\n"
    assert plain_text(TransferDone(("Digest: sha256:00", "Status: x"))) == "Digest: sha256:00\nStatus: x\n"


def test_layer_line_formats_like_docker():
    event = LayerProgress("a1b2c3d4e5f6", "Downloading", 12_300_000, 45_600_000)

    line = layer_line(event, columns=200)

    assert line == "a1b2c3d4e5f6: Downloading [" + progress_bar(12_300_000, 45_600_000, 50) + "]  12.3MB/45.6MB"
    assert progress_bar(12_300_000, 45_600_000, 50) == "=" * 13 + ">" + " " * 36
    assert progress_bar(5, 5, 10) == "=" * 10


def test_layer_line_fits_narrow_terminal():
    event = LayerProgress("a1b2c3d4e5f6", "Downloading", 12_300_000, 45_600_000)

    assert len(layer_line(event, columns=80)) < 80
    assert layer_line(event, columns=40) == "a1b2c3d4e5f6: Downloading  12.3MB/45.6MB"


def test_zero_column_terminal_keeps_whole_lines():
    # A new pty reports 0 rows and 0 columns, as the one that `script` opens does.
    controller, terminal = os.openpty()
    try:
        with os.fdopen(terminal, "w", closefd=False) as stream:
            assert os.get_terminal_size(terminal).columns == 0
            lines = LiveTransferLines(stream)
            lines.handle(LayerProgress("a1b2c3d4e5f6", "Pull complete"))
        written = os.read(controller, 4096).decode()
    finally:
        os.close(terminal)
        os.close(controller)

    assert lines.columns == DEFAULT_COLUMNS
    assert "a1b2c3d4e5f6: Pull complete" in written
