"""The loopback interface of a new network namespace, which the kernel creates down."""

import fcntl
import logging
import socket
import struct

from layerlab.engine.runtime.syscalls import SyscallError

log = logging.getLogger(__name__)

# <linux/sockios.h> and <net/if.h>
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

# struct ifreq: a 16-byte interface name, then a union whose first member
# here is the short ifr_flags, padded to the struct's 40 bytes.
_IFREQ_FLAGS = "16sh22x"


def set_loopback_up():
    """Bring `lo` up with ioctl(SIOCSIFFLAGS), as Docker does for --network none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            request = struct.pack(_IFREQ_FLAGS, b"lo", 0)
            name, flags = struct.unpack(_IFREQ_FLAGS, fcntl.ioctl(sock, SIOCGIFFLAGS, request))
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack(_IFREQ_FLAGS, name, flags | IFF_UP))
        except OSError as error:
            raise SyscallError(f"ioctl(SIOCSIFFLAGS, 'lo', IFF_UP) failed: {error.strerror} (errno {error.errno})",
                               errno=error.errno) from None
