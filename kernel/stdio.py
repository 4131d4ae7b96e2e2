"""Pipes that carry a foreground container's stdout and stderr into the cell.

A container writes to file descriptors, but the kernel's sys.stdout is a
Python object that sends stream messages. `ContainerPipes` hands the
container the write ends of two pipes and pumps their read ends into the
cell, line by line, while the container runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import selectors
import sys
import threading

log = logging.getLogger(__name__)

CHUNK_SIZE = 65536

# Seconds to wait for end-of-file after the container exits. A process that
# outlives the container and still holds a write end (a monitor, a leaked
# background job) would otherwise block the cell for ever. NOTE: 5 s is a
# guess, not measured against slow hosts.
DRAIN_TIMEOUT = 5.0


class ContainerPipes:
    """Two pipes, and one thread that copies them to `stdout` and `stderr` line by line.

    Lines keep their order within each stream. NOTE: across the two streams
    the order is only as the thread reads them, as with `docker run` without a TTY.
    """

    def __init__(self, stdout, stderr):
        self._targets = {}
        self._write_fds = []
        for target in (stdout, stderr):
            read_fd, write_fd = os.pipe()
            self._targets[read_fd] = _LineWriter(target)
            self._write_fds.append(write_fd)

        # The stop pipe wakes the thread when EOF does not come in time.
        self._stop_read, self._stop_write = os.pipe()
        self._thread = None

    @property
    def write_fds(self) -> tuple[int, int]:
        return self._write_fds[0], self._write_fds[1]

    def start(self) -> None:
        # Run in a copy of this context: ipykernel keeps the cell's parent
        # header in a context variable, which routes the output to this cell.
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._pump,),
                                        name="layerlab-container-stdio", daemon=True)
        self._thread.start()

    def finish(self) -> None:
        """Close the write ends and wait until everything written has reached the cell."""
        for write_fd in self._write_fds:
            os.close(write_fd)
        self._write_fds = []

        self._thread.join(DRAIN_TIMEOUT)
        if self._thread.is_alive():
            log.warning("container output pipe still open %.0f s after the container exited "
                        "(a background process may hold it); stopped copying", DRAIN_TIMEOUT)
            os.write(self._stop_write, b"x")
            self._thread.join()

        os.close(self._stop_read)
        os.close(self._stop_write)

    def _pump(self) -> None:
        with selectors.DefaultSelector() as selector:
            for read_fd in self._targets:
                selector.register(read_fd, selectors.EVENT_READ)
            selector.register(self._stop_read, selectors.EVENT_READ)

            open_fds = set(self._targets)
            while open_fds:
                for key, _ in selector.select():
                    if key.fd == self._stop_read:
                        self._drain(open_fds)
                        return
                    if not self._copy_chunk(key.fd):
                        selector.unregister(key.fd)
                        open_fds.discard(key.fd)

    def _copy_chunk(self, read_fd: int) -> bool:
        """Copy what `read_fd` has; return False (and close it) at end of file."""
        chunk = os.read(read_fd, CHUNK_SIZE)
        writer = self._targets[read_fd]
        if chunk:
            writer.feed(chunk)
            return True

        writer.close()
        os.close(read_fd)
        return False

    def _drain(self, open_fds: set[int]) -> None:
        # Take what is already buffered without waiting for more.
        for read_fd in open_fds:
            os.set_blocking(read_fd, False)
            with contextlib.suppress(BlockingIOError):
                while self._copy_chunk(read_fd):
                    pass
            if self._targets[read_fd].open:
                self._targets[read_fd].close()
                os.close(read_fd)


class _LineWriter:
    """Decodes bytes and writes whole lines to a text stream, flushing each."""

    def __init__(self, target):
        self.target = target
        self.pending = b""
        self.open = True

    def feed(self, chunk: bytes) -> None:
        data = self.pending + chunk
        complete, newline, self.pending = data.rpartition(b"\n")
        if newline:
            self._write(complete + newline)

    def close(self) -> None:
        if self.pending:
            self._write(self.pending)
        self.pending = b""
        self.open = False

    def _write(self, data: bytes) -> None:
        # A newline byte is never part of a UTF-8 sequence, so cutting at
        # newlines never splits a character.
        self.target.write(data.decode("utf-8", errors="replace"))
        self.target.flush()


@contextlib.contextmanager
def container_pipes(stdout=None, stderr=None):
    """Yield `(stdout_fd, stderr_fd)` for a container; its output reaches the streams before exit."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    stdout.flush()
    stderr.flush()

    pipes = ContainerPipes(stdout, stderr)
    pipes.start()
    try:
        yield pipes.write_fds
    finally:
        pipes.finish()
