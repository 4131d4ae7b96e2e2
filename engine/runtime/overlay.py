"""The overlayfs mount that is a container's root file system."""

import errno
import logging
import os

from layerlab.engine.errors import ContainerError
from layerlab.engine.runtime import syscalls
from layerlab.engine.runtime.rundir import runtime_dir
from layerlab.engine.runtime.userns import in_user_namespace

log = logging.getLogger(__name__)

# mount(2) copies its data argument into one page, terminator included.
_MOUNT_DATA_MAX = 4095

# fsconfig(2) copies a string value of at most 256 bytes, terminator included.
_FSCONFIG_STRING_MAX = 255


class _KeyUnsupported(Exception):
    """The kernel rejected the first layer in this form, so an older form must be tried."""


def mount_overlay(rootfs, target):
    """Mount the overlay described by `rootfs` (a RootfsSpec) on the directory `target`.

    Tries, newest kernel first: fsconfig with one file descriptor per layer
    (Linux 6.13+), fsconfig `lowerdir+` with one path per call (Linux 6.8+,
    each string at most 255 bytes), and mount(2) with relative paths, whose
    options must fit in one page. The first two take any number of layers.
    May change the working directory, which a forked child can afford.

    Inside a user namespace the mount gets `userxattr` (Linux 5.11+), so
    overlayfs keeps its opaque markers in `user.overlay.*` xattrs, because
    `trusted.*` ones need CAP_SYS_ADMIN in the initial namespace.
    """
    lowerdirs = list(rootfs.lowerdirs) or [runtime_dir("empty")]
    userxattr = in_user_namespace()
    for configure in (_configure_by_fd, _configure_by_path):
        try:
            _mount_with_fsconfig(configure, lowerdirs, rootfs.upperdir, rootfs.workdir, target, userxattr)
            return
        except _KeyUnsupported:
            log.debug("overlay: %s is not supported by this kernel", configure.__name__)
    _mount_with_options(lowerdirs, rootfs.upperdir, rootfs.workdir, target, userxattr)


def _mount_with_fsconfig(configure, lowerdirs, upperdir, workdir, target, userxattr):
    context = syscalls.fsopen("overlay")
    try:
        # The source is what mount(8) and /proc/self/mountinfo show, as with mount(2).
        syscalls.fsconfig(context, syscalls.FSCONFIG_SET_STRING, "source", "overlay")
        configure(context, [("lowerdir+", path) for path in lowerdirs] + [("upperdir", upperdir), ("workdir", workdir)])
        if userxattr:
            syscalls.fsconfig(context, syscalls.FSCONFIG_SET_FLAG, "userxattr")
        syscalls.fsconfig(context, syscalls.FSCONFIG_CMD_CREATE)

        mount_fd = syscalls.fsmount(context)
    finally:
        os.close(context)

    try:
        syscalls.move_mount(mount_fd, "", syscalls.AT_FDCWD, target, syscalls.MOVE_MOUNT_F_EMPTY_PATH)
    finally:
        os.close(mount_fd)


def _set_first_supported(context, command, key, value, aux, first):
    try:
        syscalls.fsconfig(context, command, key, value, aux)
    except syscalls.SyscallError as error:
        if first and error.errno == errno.EINVAL:
            raise _KeyUnsupported() from error
        raise


def _configure_by_fd(context, layers):
    for index, (key, path) in enumerate(layers):
        try:
            fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as error:
            raise ContainerError(f"overlay {key.rstrip('+')} {path}: {error.strerror}") from None
        try:
            _set_first_supported(context, syscalls.FSCONFIG_SET_FD, key, None, fd, index == 0)
        finally:
            os.close(fd)


def _configure_by_path(context, layers):
    # fsconfig copies at most 255 bytes of a string, so long paths are
    # passed relative to their common directory, which overlayfs resolves
    # against the working directory.
    paths = [path for _, path in layers]
    if any(len(path) > _FSCONFIG_STRING_MAX for path in paths):
        base = os.path.commonpath([os.path.abspath(path) for path in paths])
        os.chdir(base)
        paths = [os.path.relpath(os.path.abspath(path), base) for path in paths]

    for index, ((key, _), path) in enumerate(zip(layers, paths)):
        if len(path) > _FSCONFIG_STRING_MAX:
            raise ContainerError(f"overlay {key.rstrip('+')} path {path!r} is longer than {_FSCONFIG_STRING_MAX} bytes")
        _set_first_supported(context, syscalls.FSCONFIG_SET_STRING, key, path, 0, index == 0)


def _mount_with_options(lowerdirs, upperdir, workdir, target, userxattr):
    # Paths relative to the deepest common directory keep the options short,
    # as Docker's overlay2 driver does with its short link names. Changing
    # directory is safe because this runs in a forked child.
    target = os.path.abspath(target)
    paths = [*lowerdirs, upperdir, workdir]
    base = os.path.commonpath([os.path.abspath(path) for path in paths])
    relative = [os.path.relpath(os.path.abspath(path), base) for path in paths]
    for path in relative:
        if ":" in path or "," in path:
            raise ContainerError(f"overlay layer path {path!r} under {base} contains ':' or ','; mount(2) cannot pass it")

    options = f"lowerdir={':'.join(relative[:-2])},upperdir={relative[-2]},workdir={relative[-1]}"
    if userxattr:
        options += ",userxattr"
    if len(options) > _MOUNT_DATA_MAX:
        raise ContainerError(
            f"overlay options for {len(lowerdirs)} layers are {len(options)} bytes, more than mount(2) "
            f"accepts ({_MOUNT_DATA_MAX}); this kernel lacks fsconfig lowerdir+ (Linux 6.8+)"
        )

    os.chdir(base)
    syscalls.mount("overlay", target, "overlay", 0, options)
