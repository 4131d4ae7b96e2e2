"""Linux system calls that Python 3.11's standard library lacks, through ctypes.

Each wrapper raises `SyscallError` (a `ContainerError`) that names the call,
its paths and its flags, so the error of a failed container start names what
the kernel rejected. Constants carry the names and values of the kernel's UAPI headers.
"""

import ctypes
import errno
import logging
import os

from layerlab.engine.errors import ContainerError

log = logging.getLogger(__name__)

# CDLL(None) opens the running program, whose symbol table includes libc.
# ctypes.util.find_library is avoided because it may start ldconfig.
_libc = ctypes.CDLL(None, use_errno=True)

# <linux/sched.h>
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# <linux/mount.h>
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

FSOPEN_CLOEXEC = 0x1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_SET_FD = 5
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 0x1
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
AT_FDCWD = -100
AT_RECURSIVE = 0x8000

# <linux/prctl.h>
PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37

# <linux/capability.h>
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# <linux/close_range.h>
CLOSE_RANGE_CLOEXEC = 1 << 2

# System call numbers for the calls glibc 2.36 has no wrapper for. Calls
# added since Linux 5.0 share one number on every architecture.
_SYSCALL_NUMBERS = {
    "x86_64": {"pivot_root": 155},
    "aarch64": {"pivot_root": 41},
}
SYS_open_tree = 428
SYS_move_mount = 429
SYS_fsopen = 430
SYS_fsconfig = 431
SYS_fsmount = 432
SYS_close_range = 436
SYS_mount_setattr = 442

_MOUNT_FLAG_NAMES = {
    MS_RDONLY: "MS_RDONLY",
    MS_NOSUID: "MS_NOSUID",
    MS_NODEV: "MS_NODEV",
    MS_NOEXEC: "MS_NOEXEC",
    MS_REMOUNT: "MS_REMOUNT",
    MS_NOSYMFOLLOW: "MS_NOSYMFOLLOW",
    MS_NOATIME: "MS_NOATIME",
    MS_NODIRATIME: "MS_NODIRATIME",
    MS_BIND: "MS_BIND",
    MS_MOVE: "MS_MOVE",
    MS_REC: "MS_REC",
    MS_PRIVATE: "MS_PRIVATE",
    MS_SLAVE: "MS_SLAVE",
    MS_RELATIME: "MS_RELATIME",
    MS_STRICTATIME: "MS_STRICTATIME",
}

_CLONE_FLAG_NAMES = {
    CLONE_NEWNS: "CLONE_NEWNS",
    CLONE_NEWCGROUP: "CLONE_NEWCGROUP",
    CLONE_NEWUTS: "CLONE_NEWUTS",
    CLONE_NEWIPC: "CLONE_NEWIPC",
    CLONE_NEWUSER: "CLONE_NEWUSER",
    CLONE_NEWPID: "CLONE_NEWPID",
    CLONE_NEWNET: "CLONE_NEWNET",
}


class SyscallError(ContainerError):
    """A system call that failed, with its errno."""

    def __init__(self, message, *, errno=0):
        self.errno = errno
        super().__init__(message)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def flag_names(flags, names):
    """Format a bit mask as `A|B|0x...` with the names from `names`."""
    parts = [name for bit, name in names.items() if flags & bit]
    rest = flags & ~sum(bit for bit in names if flags & bit)
    if rest:
        parts.append(hex(rest))
    return "|".join(parts) or "0"


def _raise_errno(call):
    code = ctypes.get_errno()
    raise SyscallError(f"{call} failed: {os.strerror(code)} (errno {code})", errno=code)


def _encode(value):
    return None if value is None else os.fsencode(value)


def _syscall_number(name):
    machine = os.uname().machine
    try:
        return _SYSCALL_NUMBERS[machine][name]
    except KeyError:
        raise SyscallError(f"{name}: system call number unknown on {machine}", errno=errno.ENOSYS) from None


def _syscall(number, *args):
    return _libc.syscall(ctypes.c_long(number), *args)


def mount(source, target, fstype, flags, data=None):
    """Call mount(2)."""
    result = _libc.mount(_encode(source), _encode(target), _encode(fstype), ctypes.c_ulong(flags), _encode(data))
    if result != 0:
        _raise_errno(
            f"mount({source!r}, {target!r}, {fstype!r}, {flag_names(flags, _MOUNT_FLAG_NAMES)}, {data!r})"
        )


def umount2(target, flags=0):
    """Call umount2(2)."""
    if _libc.umount2(_encode(target), ctypes.c_int(flags)) != 0:
        _raise_errno(f"umount2({target!r}, {'MNT_DETACH' if flags == MNT_DETACH else flags})")


def pivot_root(new_root, put_old):
    """Call pivot_root(2), which glibc does not wrap."""
    number = _syscall_number("pivot_root")
    if _syscall(number, _encode(new_root), _encode(put_old)) != 0:
        _raise_errno(f"pivot_root({new_root!r}, {put_old!r})")


def unshare(flags):
    """Call unshare(2) (os.unshare exists only from Python 3.12)."""
    if _libc.unshare(ctypes.c_int(flags)) != 0:
        _raise_errno(f"unshare({flag_names(flags, _CLONE_FLAG_NAMES)})")


def setns(fd, nstype):
    """Call setns(2) (os.setns exists only from Python 3.12)."""
    if _libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)) != 0:
        _raise_errno(f"setns({fd}, {flag_names(nstype, _CLONE_FLAG_NAMES)})")


def sethostname(name):
    """Call sethostname(2)."""
    raw = name.encode()
    if _libc.sethostname(raw, ctypes.c_size_t(len(raw))) != 0:
        _raise_errno(f"sethostname({name!r})")


def prctl(option, arg2=0, arg3=0, arg4=0, arg5=0):
    """Call prctl(2) with integer arguments and return its result."""
    args = [ctypes.c_ulong(value) for value in (arg2, arg3, arg4, arg5)]
    result = _libc.prctl(ctypes.c_int(option), *args)
    if result < 0:
        _raise_errno(f"prctl({option}, {arg2}, {arg3}, {arg4}, {arg5})")
    return result


def get_child_subreaper():
    """Return True when the calling process is a child subreaper (PR_GET_CHILD_SUBREAPER)."""
    value = ctypes.c_int(0)
    if _libc.prctl(ctypes.c_int(PR_GET_CHILD_SUBREAPER), ctypes.byref(value), ctypes.c_ulong(0),
                   ctypes.c_ulong(0), ctypes.c_ulong(0)) < 0:
        _raise_errno("prctl(PR_GET_CHILD_SUBREAPER)")
    return bool(value.value)


def capget():
    """Return the calling thread's (effective, permitted, inheritable) capability masks."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.capget(ctypes.byref(header), data) != 0:
        _raise_errno("capget(0)")
    masks = []
    for field in ("effective", "permitted", "inheritable"):
        masks.append(getattr(data[0], field) | getattr(data[1], field) << 32)
    return tuple(masks)


def capset(effective, permitted, inheritable):
    """Set the calling thread's capability masks (64-bit, version 3 ABI)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for index, shift in enumerate((0, 32)):
        data[index].effective = (effective >> shift) & 0xFFFFFFFF
        data[index].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[index].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    if _libc.capset(ctypes.byref(header), data) != 0:
        _raise_errno(f"capset(effective={effective:#x}, permitted={permitted:#x}, inheritable={inheritable:#x})")


def fsopen(fstype, flags=FSOPEN_CLOEXEC):
    """Call fsopen(2) and return the file system context fd."""
    fd = _syscall(SYS_fsopen, _encode(fstype), ctypes.c_uint(flags))
    if fd < 0:
        _raise_errno(f"fsopen({fstype!r})")
    return fd


def fsconfig(fd, command, key=None, value=None, aux=0):
    """Call fsconfig(2): `value` is the string of FSCONFIG_SET_STRING, `aux` the fd of FSCONFIG_SET_FD."""
    result = _syscall(SYS_fsconfig, ctypes.c_int(fd), ctypes.c_uint(command), _encode(key), _encode(value),
                      ctypes.c_int(aux))
    if result != 0:
        _raise_errno(f"fsconfig({fd}, {command}, {key!r}, {value!r})")


def fsmount(fd, flags=FSMOUNT_CLOEXEC, attr_flags=0):
    """Call fsmount(2) and return the detached mount's fd."""
    mount_fd = _syscall(SYS_fsmount, ctypes.c_int(fd), ctypes.c_uint(flags), ctypes.c_uint(attr_flags))
    if mount_fd < 0:
        _raise_errno(f"fsmount({fd}, {flags}, {attr_flags})")
    return mount_fd


def move_mount(from_fd, from_path, to_fd, to_path, flags):
    """Call move_mount(2)."""
    result = _syscall(SYS_move_mount, ctypes.c_int(from_fd), _encode(from_path), ctypes.c_int(to_fd),
                      _encode(to_path), ctypes.c_uint(flags))
    if result != 0:
        _raise_errno(f"move_mount({from_fd}, {from_path!r}, {to_fd}, {to_path!r}, {flags:#x})")


def mount_setattr(path, attr_set, flags=AT_RECURSIVE):
    """Call mount_setattr(2) to set mount attributes on `path` (recursively by default)."""
    attr = _MountAttr(attr_set, 0, 0, 0)
    result = _syscall(SYS_mount_setattr, ctypes.c_int(AT_FDCWD), _encode(path), ctypes.c_uint(flags),
                      ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
    if result != 0:
        _raise_errno(f"mount_setattr({path!r}, attr_set={attr_set:#x}, flags={flags:#x})")


def close_range_cloexec(first):
    """Mark every fd from `first` up close-on-exec with one close_range(2) call."""
    result = _syscall(SYS_close_range, ctypes.c_uint(first), ctypes.c_uint(0xFFFFFFFF),
                      ctypes.c_uint(CLOSE_RANGE_CLOEXEC))
    if result != 0:
        _raise_errno(f"close_range({first}, ~0U, CLOSE_RANGE_CLOEXEC)")


def mknod(path, mode, major, minor):
    """Create a device node, raising SyscallError like the other wrappers."""
    try:
        os.mknod(path, mode, os.makedev(major, minor))
    except OSError as error:
        raise SyscallError(
            f"mknod({path!r}, {mode:#o}, {major}:{minor}) failed: {error.strerror} (errno {error.errno})",
            errno=error.errno,
        ) from None
