"""Errors sent from a forked child to its parent over a close-on-exec pipe.

The child writes the exception and exits; when it execs instead, the pipe
closes empty. So the parent learns, before `start` returns, whether the
container's program started, and why not.

Exceptions travel pickled when the child can still import pickle. After
pivot_root the Python installation is out of reach, so there the child
sends the message and exit code as text, and the parent rebuilds a
ContainerError.
"""

import logging
import os
import sys

from layerlab.engine.errors import ContainerError, LayerlabError

log = logging.getLogger(__name__)

# The first byte of a pickle of protocol 2 or later is 0x80, never this one.
_TEXT_MARKER = b"T"


def send_error(fd, error):
    """Write `error` to `fd` for `receive_error`."""
    try:
        import pickle

        # The class, args and attributes are sent rather than the exception,
        # because unpickling an exception calls __init__ with its args, which
        # breaks classes whose __init__ takes other arguments than it stores.
        data = pickle.dumps((type(error), error.args, error.__dict__))
    except Exception:
        exit_code = getattr(error, "exit_code", ContainerError.exit_code)
        message = str(error) if isinstance(error, LayerlabError) else f"{type(error).__name__}: {error}"
        data = _TEXT_MARKER + f"{exit_code}\0{message}".encode("utf-8", "backslashreplace")

    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def report_error(fd, error):
    """Send `error` to the launcher from a forked child, ignoring a launcher that has gone away.

    The child exits with its status either way, so a failed report must not raise.
    """
    try:
        send_error(fd, error)
    except BaseException:
        pass


def exit_child(exit_code):
    """Flush what a forked child printed, then leave with `exit_code` and without the parent's cleanup."""
    # os._exit skips Python's buffered output.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(exit_code)


def receive_error(fd):
    """Read `fd` to its end and return the exception the child sent, or None; closes `fd`."""
    chunks = []
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)

    if not chunks:
        return None
    data = b"".join(chunks)
    if data.startswith(_TEXT_MARKER):
        return _text_error(data)

    import pickle

    error_type, args, attributes = pickle.loads(data)
    error = error_type.__new__(error_type)
    error.args = args
    error.__dict__.update(attributes)
    if isinstance(error, LayerlabError):
        return error

    # An unexpected exception from the child keeps its type name in the message.
    wrapped = ContainerError(f"{type(error).__name__}: {error}")
    wrapped.__cause__ = error
    return wrapped


def _text_error(data):
    exit_code, _, message = data[len(_TEXT_MARKER):].decode("utf-8", "replace").partition("\0")
    error = ContainerError(message)
    error.exit_code = int(exit_code)
    return error
