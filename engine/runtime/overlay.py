"""The overlayfs mount that is a container's root file system."""

import errno
import logging
import os

from layerlab.engine.errors import ContainerError
from layerlab.engine.runtime import syscalls
from layerlab.engine.runtime.rundir import runtime_dir

log = logging.getLogger(__name__)

# mount(2) copies its data argument into one page, terminator included.
_MOUNT_DATA_MAX = 4095


def mount_overlay(rootfs, target):
    """Mount the overlay described by `rootfs` (a RootfsSpec) on the directory `target`.

    Uses fsconfig's `lowerdir+` (Linux 6.8+), which takes one path per call,
    so neither the number of layers nor their path lengths hit the one-page
    limit of mount(2)'s options. Older kernels reject the key with EINVAL,
    and then mount(2) gets relative paths.
    """
    lowerdirs = list(rootfs.lowerdirs) or [runtime_dir("empty")]
    try:
        _mount_with_fsconfig(lowerdirs, rootfs.upperdir, rootfs.workdir, target)
    except syscalls.SyscallError as error:
        if error.errno != errno.EINVAL or "lowerdir+" not in str(error):
            raise
        log.debug("fsconfig lowerdir+ is not supported, falling back to mount(2)")
        _mount_with_options(lowerdirs, rootfs.upperdir, rootfs.workdir, target)


def _mount_with_fsconfig(lowerdirs, upperdir, workdir, target):
    context = syscalls.fsopen("overlay")
    try:
        # The source is what mount(8) and /proc/self/mountinfo show, as with mount(2).
        syscalls.fsconfig(context, syscalls.FSCONFIG_SET_STRING, "source", "overlay")
        for lowerdir in lowerdirs:
            syscalls.fsconfig(context, syscalls.FSCONFIG_SET_STRING, "lowerdir+", lowerdir)
        syscalls.fsconfig(context, syscalls.FSCONFIG_SET_STRING, "upperdir", upperdir)
        syscalls.fsconfig(context, syscalls.FSCONFIG_SET_STRING, "workdir", workdir)
        syscalls.fsconfig(context, syscalls.FSCONFIG_CMD_CREATE)

        mount_fd = syscalls.fsmount(context)
    finally:
        os.close(context)

    try:
        syscalls.move_mount(mount_fd, "", syscalls.AT_FDCWD, target, syscalls.MOVE_MOUNT_F_EMPTY_PATH)
    finally:
        os.close(mount_fd)


def _mount_with_options(lowerdirs, upperdir, workdir, target):
    # Paths relative to the deepest common directory keep the options short,
    # as Docker's overlay2 driver does with its short link names. Changing
    # directory is safe because this runs in a child that is about to exec.
    # NOTE: the caller's working directory is changed.
    target = os.path.abspath(target)
    paths = [*lowerdirs, upperdir, workdir]
    base = os.path.commonpath([os.path.abspath(path) for path in paths])
    relative = [os.path.relpath(os.path.abspath(path), base) for path in paths]
    for path in relative:
        if ":" in path or "," in path:
            raise ContainerError(f"overlay layer path {path!r} under {base} contains ':' or ','; mount(2) cannot pass it")

    options = f"lowerdir={':'.join(relative[:-2])},upperdir={relative[-2]},workdir={relative[-1]}"
    if len(options) > _MOUNT_DATA_MAX:
        raise ContainerError(
            f"overlay options for {len(lowerdirs)} layers are {len(options)} bytes, more than mount(2) "
            f"accepts ({_MOUNT_DATA_MAX}); this kernel lacks fsconfig lowerdir+ (Linux 6.8+)"
        )

    os.chdir(base)
    syscalls.mount("overlay", target, "overlay", 0, options)
