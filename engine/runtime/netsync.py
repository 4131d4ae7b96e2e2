"""The launcher-child handshake that lets the launcher configure a container's network before it execs.

The child enters its new network namespace and reports `ready`; the
launcher then moves a veth end into that namespace and configures it while
the child goes on with its mounts, and writes `released` when done. The
child waits for `released` just before execve(2), so the program never
starts without its network.
"""

import logging
import os

from layerlab.engine.errors import ContainerError

log = logging.getLogger(__name__)

_BYTE = b"\x00"


class NetworkHandshake:
    """Two pipes: child -> launcher (`ready`) and launcher -> child (`released`)."""

    def __init__(self):
        self._ready_read, self._ready_write = os.pipe2(os.O_CLOEXEC)
        self._release_read, self._release_write = os.pipe2(os.O_CLOEXEC)

    # In the child

    def child_side(self):
        """Close the launcher's ends; call right after fork in the child."""
        self._close("_ready_read", "_release_write")

    def notify_ready(self):
        os.write(self._ready_write, _BYTE)
        self._close("_ready_write")

    def wait_released(self):
        """Block until the launcher has configured the network; raise if it gave up."""
        data = os.read(self._release_read, 1)
        self._close("_release_read")
        if data != _BYTE:
            raise ContainerError("the launcher failed to set up the container's network")

    # In the launcher

    def launcher_side(self):
        """Close the child's ends; call right after fork in the launcher."""
        self._close("_ready_write", "_release_read")

    def wait_ready(self) -> bool:
        """Wait for the child's network namespace; False if the child failed before creating it."""
        data = os.read(self._ready_read, 1)
        self._close("_ready_read")
        return data == _BYTE

    def release(self):
        os.write(self._release_write, _BYTE)
        self._close("_release_write")

    def close(self):
        """Close whatever is still open in this process; a child waiting for `released` then gets EOF."""
        self._close("_ready_read", "_release_write")

    def _close(self, *names):
        # Each end is closed once and then set to -1. The launcher opens
        # other pipes (slirp4netns's ready and exit pipes) between
        # wait_ready and close, and those can reuse a closed end's number,
        # so closing that number again would close them.
        for name in names:
            fd = getattr(self, name)
            if fd < 0:
                continue
            setattr(self, name, -1)
            try:
                os.close(fd)
            except OSError:
                pass
