"""The container's root file system, assembled inside its new mount namespace.

Runs in the container's init after unshare(CLONE_NEWNS): every mount made
here belongs to that namespace and disappears with its last process.
"""

import errno
import logging
import os
import stat

from layerlab.engine.runtime import syscalls
from layerlab.engine.runtime.devices import mount_dev
from layerlab.engine.runtime.mountinfo import remount_tree_readonly
from layerlab.engine.runtime.mountpoints import ensure_mountpoint
from layerlab.engine.runtime.overlay import mount_overlay
from layerlab.engine.runtime.rundir import runtime_dir

log = logging.getLogger(__name__)

# Docker 20.10's defaults (moby's oci.DefaultSpec). They hide kernel state
# that is not namespaced, such as kernel memory, keys and timer statistics.
MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

_NO_SUID_DEV_EXEC = syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC


def make_mounts_private():
    """Stop mount events from propagating between this namespace and the host's."""
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)


def prepare_rootfs(spec):
    """Mount the container's root and its special file systems, and return the root's host path."""
    root = runtime_dir("mnt")
    mount_overlay(spec.rootfs, root)

    bind_etc_files(root, spec.etc_files)
    mount_extra(root, spec.mounts)
    mount_proc(ensure_mountpoint(root, "/proc"))
    mount_dev(ensure_mountpoint(root, "/dev"), host_devices=spec.privileged)
    mount_sys(ensure_mountpoint(root, "/sys"), spec.network, spec.privileged)

    if not spec.privileged:
        mask_paths(root)
        make_paths_readonly(root)
    return root


def bind_etc_files(root, etc_files):
    """Bind each host file in `etc_files` (container path -> host path) read-write into the root."""
    for container_path, host_path in etc_files.items():
        target = ensure_mountpoint(root, container_path, directory=False)
        syscalls.mount(host_path, target, None, syscalls.MS_BIND)


# Mount flags that may appear among a tmpfs mount's options: name -> (set, clear).
_TMPFS_FLAG_OPTIONS = {
    "ro": (syscalls.MS_RDONLY, 0),
    "rw": (0, syscalls.MS_RDONLY),
    "nosuid": (syscalls.MS_NOSUID, 0),
    "suid": (0, syscalls.MS_NOSUID),
    "nodev": (syscalls.MS_NODEV, 0),
    "dev": (0, syscalls.MS_NODEV),
    "noexec": (syscalls.MS_NOEXEC, 0),
    "exec": (0, syscalls.MS_NOEXEC),
}


def tmpfs_flags_and_data(options, readonly):
    """Split a tmpfs option list into mount flags and the data string that tmpfs parses."""
    # nosuid and nodev unless the options say otherwise: a tmpfs holds
    # files that the container wrote, never devices or set-user-ID programs
    # to trust.
    flags = syscalls.MS_NOSUID | syscalls.MS_NODEV | (syscalls.MS_RDONLY if readonly else 0)
    data = []
    for option in filter(None, (options or "").split(",")):
        if option in _TMPFS_FLAG_OPTIONS:
            set_bits, clear_bits = _TMPFS_FLAG_OPTIONS[option]
            flags = (flags | set_bits) & ~clear_bits
        else:
            data.append(option)
    return flags, ",".join(data) or None


def mount_extra(root, mounts):
    """Mount the spec's extra bind and tmpfs mounts, making read-only binds read-only."""
    for extra in mounts:
        if extra.type == "tmpfs":
            target = ensure_mountpoint(root, extra.target)
            flags, data = tmpfs_flags_and_data(extra.options, extra.readonly)
            syscalls.mount("tmpfs", target, "tmpfs", flags, data)
            continue
        target = ensure_mountpoint(root, extra.target, directory=os.path.isdir(extra.source))
        if extra.copy_up:
            copy_up(target, extra.source)
        syscalls.mount(extra.source, target, None, syscalls.MS_BIND | syscalls.MS_REC)
        if extra.readonly:
            _make_tree_readonly(target)


def copy_up(image_dir, volume_dir):
    """Copy the image's files at `image_dir` into the empty volume `volume_dir`, keeping owners and modes."""
    if not os.path.isdir(image_dir) or os.listdir(volume_dir):
        return
    for entry in os.scandir(image_dir):
        _copy_entry(entry.path, os.path.join(volume_dir, entry.name))
    info = os.stat(image_dir)
    os.chown(volume_dir, info.st_uid, info.st_gid)
    os.chmod(volume_dir, stat.S_IMODE(info.st_mode))


def _copy_entry(source, destination):
    import shutil

    info = os.lstat(source)
    if stat.S_ISDIR(info.st_mode):
        os.mkdir(destination)
        for entry in os.scandir(source):
            _copy_entry(entry.path, os.path.join(destination, entry.name))
        os.chmod(destination, stat.S_IMODE(info.st_mode))
    elif stat.S_ISLNK(info.st_mode):
        os.symlink(os.readlink(source), destination)
    elif stat.S_ISREG(info.st_mode):
        shutil.copy2(source, destination, follow_symlinks=False)
    else:
        # Devices, fifos and sockets are left out, as a volume holds data.
        return
    os.lchown(destination, info.st_uid, info.st_gid)


def mount_proc(path):
    """Mount a procfs that shows the container's PID namespace."""
    # Nothing under /proc is a device, an executable or set-user-ID.
    syscalls.mount("proc", path, "proc", _NO_SUID_DEV_EXEC)


def mount_sys(path, network, privileged):
    """Mount /sys read-only (read-write when privileged)."""
    readonly = 0 if privileged else syscalls.MS_RDONLY
    if network != "host":
        # A sysfs mount shows the network devices of the mounter's network
        # namespace, which is the container's own here.
        syscalls.mount("sysfs", path, "sysfs", _NO_SUID_DEV_EXEC | readonly)
        return

    # In the host's network namespace a new sysfs would be the host's anyway,
    # and a user namespace may not mount one, so bind the host's /sys.
    syscalls.mount("/sys", path, None, syscalls.MS_BIND | syscalls.MS_REC)
    if readonly:
        _make_tree_readonly(path)


def _make_tree_readonly(path):
    try:
        syscalls.mount_setattr(path, syscalls.MOUNT_ATTR_RDONLY)
    except syscalls.SyscallError as error:
        if error.errno != errno.ENOSYS:
            raise
        # Before Linux 5.12 a remount changes one mount at a time, so each
        # mount of the tree is found in mountinfo and remounted.
        remount_tree_readonly(path)


def mask_paths(root):
    """Hide MASKED_PATHS: /dev/null over files, an empty read-only tmpfs over directories."""
    null = os.path.join(root, "dev/null")
    for path in MASKED_PATHS:
        target = root + path
        try:
            info = os.lstat(target)
        except FileNotFoundError:
            continue

        if stat.S_ISDIR(info.st_mode):
            # Read-only keeps it empty. runc sets no other flag, and an
            # empty read-only tmpfs needs none.
            syscalls.mount("tmpfs", target, "tmpfs", syscalls.MS_RDONLY)
        else:
            syscalls.mount(null, target, None, syscalls.MS_BIND)


def make_paths_readonly(root):
    """Make READONLY_PATHS read-only by binding each onto itself and remounting the bind."""
    for path in READONLY_PATHS:
        target = root + path
        if not os.path.lexists(target):
            continue

        syscalls.mount(target, target, None, syscalls.MS_BIND | syscalls.MS_REC)
        # A remount must repeat the flags of the proc mount below, or the
        # kernel treats it as an attempt to clear them.
        syscalls.mount(None, target, None,
                       syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY | _NO_SUID_DEV_EXEC)


def pivot_root(root):
    """Make `root` the root directory and detach the host's root from this namespace."""
    os.chdir(root)

    # pivot_root(".", ".") stacks the old root on top of the new one, so no
    # directory for the old root is needed in the image (runc does the same).
    syscalls.pivot_root(".", ".")
    syscalls.umount2(".", syscalls.MNT_DETACH)
    os.chdir("/")


def remount_root_readonly():
    """Make the container's root mount read-only; its submounts keep their own flags."""
    syscalls.mount(None, "/", None, syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY)
