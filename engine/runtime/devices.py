"""The container's /dev: a small tmpfs with only the standard device nodes.

The set matches what Docker 20.10 (runc) gives a container without
--privileged or --device.
"""

import errno
import logging
import os
import stat

from layerlab.engine.runtime import syscalls

log = logging.getLogger(__name__)

# name -> (major, minor), from the kernel's Documentation/admin-guide/devices.txt
STANDARD_DEVICES = {
    "null": (1, 3),
    "zero": (1, 5),
    "full": (1, 7),
    "random": (1, 8),
    "urandom": (1, 9),
    "tty": (5, 0),
}

STANDARD_SYMLINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
    "core": "/proc/kcore",
    "ptmx": "pts/ptmx",
}


# Host entries that a privileged container does not get: pts, shm and
# mqueue are file systems mounted fresh below, and ptmx is a symlink into pts.
_HOST_DEVICE_SKIP = ("pts", "shm", "mqueue", "ptmx")


def mount_dev(dev, host_devices=False):
    """Mount a fresh /dev on the directory `dev` and populate it; with host_devices, with every host device.

    Runs before pivot_root, so the host's /dev is still at /dev.
    """
    # nosuid: no set-user-ID program can be placed on it. Not nodev, since
    # the nodes below live on it. strictatime and the 64 MiB size are runc's.
    syscalls.mount("tmpfs", dev, "tmpfs", syscalls.MS_NOSUID | syscalls.MS_STRICTATIME, "mode=755,size=65536k")

    for name, (major, minor) in STANDARD_DEVICES.items():
        _create_device(os.path.join(dev, name), major, minor)
    if host_devices:
        _copy_host_devices("/dev", dev)

    _mount_devpts(os.path.join(dev, "pts"))
    _mount_shm(os.path.join(dev, "shm"))
    _mount_mqueue(os.path.join(dev, "mqueue"))

    for name, target in STANDARD_SYMLINKS.items():
        # Kernels built without CONFIG_PROC_KCORE have no /proc/kcore, and
        # runc then leaves /dev/core out too.
        if name == "core" and not os.path.exists("/proc/kcore"):
            continue
        os.symlink(target, os.path.join(dev, name))


def _copy_host_devices(host_dir, container_dir):
    # --privileged gives the container the host's devices, as runc does
    # for Docker: every character and block device, with its mode and owner.
    for entry in os.scandir(host_dir):
        if entry.name in _HOST_DEVICE_SKIP or entry.is_symlink():
            continue
        path = os.path.join(container_dir, entry.name)
        if entry.is_dir():
            os.makedirs(path, 0o755, exist_ok=True)
            _copy_host_devices(entry.path, path)
            continue
        info = entry.stat(follow_symlinks=False)
        if not (stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)) or os.path.lexists(path):
            continue
        _create_device(path, os.major(info.st_rdev), os.minor(info.st_rdev), kind=stat.S_IFMT(info.st_mode),
                       mode=stat.S_IMODE(info.st_mode), host_path=entry.path)
        try:
            os.lchown(path, info.st_uid, info.st_gid)
        except OSError:
            # In a user namespace the host's owner may be unmapped.
            pass


def _create_device(path, major, minor, kind=stat.S_IFCHR, mode=0o666, host_path=None):
    try:
        syscalls.mknod(path, kind | mode, major, minor)
    except syscalls.SyscallError as error:
        # Without CAP_MKNOD (in a user namespace) bind the host's node instead.
        if error.errno != errno.EPERM:
            raise
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, mode))
        syscalls.mount(host_path or os.path.join("/dev", os.path.basename(path)), path, None, syscalls.MS_BIND)
        return

    # mknod applies the umask, so set the mode explicitly.
    os.chmod(path, mode)


def _mount_devpts(path):
    os.mkdir(path, 0o755)
    # newinstance keeps the container's terminals apart from the host's.
    # ptmxmode=0666 lets any user open /dev/ptmx, and gid=5 is the tty group
    # in Debian-derived images, as Docker sets it. No set-user-ID programs and
    # no executables belong on a devpts.
    flags = syscalls.MS_NOSUID | syscalls.MS_NOEXEC
    try:
        syscalls.mount("devpts", path, "devpts", flags, "newinstance,ptmxmode=0666,mode=0620,gid=5")
    except syscalls.SyscallError as error:
        # In a user namespace that maps only id 0, gid 5 does not exist.
        if error.errno != errno.EINVAL:
            raise
        log.debug("devpts rejected gid=5 (%s); mounting it without a tty group", error)
        syscalls.mount("devpts", path, "devpts", flags, "newinstance,ptmxmode=0666,mode=0620")


def _mount_shm(path):
    os.mkdir(path, 0o1777)
    # Shared memory contains no devices, executables or set-user-ID programs.
    syscalls.mount(
        "shm", path, "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC,
        "mode=1777,size=65536k",
    )


def _mount_mqueue(path):
    os.mkdir(path, 0o755)
    # The mqueue file system shows the container's own IPC namespace.
    syscalls.mount("mqueue", path, "mqueue", syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
