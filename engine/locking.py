"""Advisory file locks under the store's `locks/` folder.

fcntl locks are released by the kernel when their holder dies, so a crash
or Ctrl-C never leaves the store locked.
"""

import contextlib
import fcntl
import os
import time


@contextlib.contextmanager
def file_lock(path: str, *, shared: bool = False):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock_waiting(path: str, on_wait=None, *, notice_after: float = 1.0):
    """Hold an exclusive lock on `path`, calling `on_wait()` once when it is still taken after `notice_after` seconds.

    Ctrl-C while waiting raises KeyboardInterrupt, and the lock is not taken.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        locked = _try_lock(fd, fcntl.LOCK_EX)
        deadline = time.monotonic() + notice_after
        while not locked and time.monotonic() < deadline:
            time.sleep(0.05)
            locked = _try_lock(fd, fcntl.LOCK_EX)
        if not locked:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def try_exclusive_lock(path: str):
    """Yield True while holding an exclusive lock on `path`, or False at once when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        yield _try_lock(fd, fcntl.LOCK_EX)
    finally:
        os.close(fd)


def _try_lock(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
