"""The launcher-child network handshake, run in one process."""

import os

from layerlab.engine.runtime.netsync import NetworkHandshake


def test_handshake_closes_each_end_once():
    handshake = NetworkHandshake()
    ready_read = handshake._ready_read
    os.write(handshake._ready_write, b"\x00")
    handshake.launcher_side()
    assert handshake.wait_ready()

    # The launcher's next pipe (slirp4netns's exit pipe, say) can get the
    # number of the end that wait_ready closed.
    other_read, other_write = os.pipe()
    if other_read != ready_read:
        os.dup2(other_read, ready_read)
    try:
        handshake.close()

        os.fstat(ready_read)  # raises EBADF if close() closed the number again
    finally:
        for fd in {ready_read, other_read, other_write}:
            os.close(fd)


def test_handshake_close_marks_ends_closed():
    handshake = NetworkHandshake()
    handshake.launcher_side()

    handshake.close()

    assert handshake._ready_read == -1
    assert handshake._release_write == -1
    assert handshake._ready_write == -1
    assert handshake._release_read == -1
