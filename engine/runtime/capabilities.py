"""Capability sets: Docker's defaults, --cap-add and --cap-drop, and applying them."""

import logging

from layerlab.engine.errors import InvalidArgumentError
from layerlab.engine.runtime import syscalls

log = logging.getLogger(__name__)

# Capability numbers from <linux/capability.h>, up to Linux 5.9.
CAPABILITIES = {
    "CHOWN": 0,
    "DAC_OVERRIDE": 1,
    "DAC_READ_SEARCH": 2,
    "FOWNER": 3,
    "FSETID": 4,
    "KILL": 5,
    "SETGID": 6,
    "SETUID": 7,
    "SETPCAP": 8,
    "LINUX_IMMUTABLE": 9,
    "NET_BIND_SERVICE": 10,
    "NET_BROADCAST": 11,
    "NET_ADMIN": 12,
    "NET_RAW": 13,
    "IPC_LOCK": 14,
    "IPC_OWNER": 15,
    "SYS_MODULE": 16,
    "SYS_RAWIO": 17,
    "SYS_CHROOT": 18,
    "SYS_PTRACE": 19,
    "SYS_PACCT": 20,
    "SYS_ADMIN": 21,
    "SYS_BOOT": 22,
    "SYS_NICE": 23,
    "SYS_RESOURCE": 24,
    "SYS_TIME": 25,
    "SYS_TTY_CONFIG": 26,
    "MKNOD": 27,
    "LEASE": 28,
    "AUDIT_WRITE": 29,
    "AUDIT_CONTROL": 30,
    "SETFCAP": 31,
    "MAC_OVERRIDE": 32,
    "MAC_ADMIN": 33,
    "SYSLOG": 34,
    "WAKE_ALARM": 35,
    "BLOCK_SUSPEND": 36,
    "AUDIT_READ": 37,
    "PERFMON": 38,
    "BPF": 39,
    "CHECKPOINT_RESTORE": 40,
}

# Docker 20.10's default set (moby's oci/caps/defaults.go).
DEFAULT_CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
)


def _normalize(name):
    upper = name.strip().upper()
    upper = upper[4:] if upper.startswith("CAP_") else upper
    if upper != "ALL" and upper not in CAPABILITIES:
        raise InvalidArgumentError(f"unknown capability: {name!r}")
    return upper


def last_capability():
    """Return the highest capability number that the running kernel supports."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as file:
            return int(file.read())
    except OSError:
        return max(CAPABILITIES.values())


def capability_set(cap_add=(), cap_drop=(), privileged=False):
    """Return the capability names for a container, combined as Docker 20.10 does.

    Privileged means all. With "ALL" in cap_add: all but cap_drop. With "ALL"
    in cap_drop: only cap_add. Otherwise the defaults minus cap_drop plus
    cap_add, so a name in both lists is kept.
    """
    added = {_normalize(name) for name in cap_add}
    dropped = {_normalize(name) for name in cap_drop}

    if privileged:
        return frozenset(CAPABILITIES)
    if "ALL" in added:
        return frozenset(CAPABILITIES) - dropped
    if "ALL" in dropped:
        return frozenset(added)
    return frozenset(DEFAULT_CAPABILITIES) - dropped | added


def capability_mask(names):
    """Return the bit mask for a set of capability names."""
    mask = 0
    for name in names:
        mask |= 1 << CAPABILITIES[name]
    return mask


def permitted_mask():
    """Return the calling process's permitted set, the most that capset(2) can keep."""
    return syscalls.capget()[1]


def drop_bounding_set(mask):
    """Drop every capability not in `mask` from the bounding set, so no exec can gain it."""
    for number in range(last_capability() + 1):
        if not mask & (1 << number):
            syscalls.prctl(syscalls.PR_CAPBSET_DROP, number)


def clear_ambient():
    """Clear the ambient set, which would otherwise survive exec for a non-root user."""
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)


def set_process_capabilities(mask, uid):
    """Set effective and permitted to `mask` for root, and leave a non-root user none.

    The inheritable set stays empty, as in Docker since 20.10.14, because a
    filled one lets programs with inheritable file capabilities gain them.
    A non-root user has none: setuid(2) has cleared them, as Docker wants.
    """
    if uid != 0:
        return
    syscalls.capset(mask, mask, 0)
