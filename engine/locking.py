"""Advisory file locks under the store's `locks/` folder.

fcntl locks are released by the kernel when their holder dies, so a crash
or Ctrl-C never leaves the store locked.
"""

import contextlib
import fcntl
import os


@contextlib.contextmanager
def file_lock(path: str, *, shared: bool = False):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
