"""A function run on a mounted overlay in a private mount namespace (COPY in builds uses it)."""

import logging
import os

from layerlab.engine.errors import ContainerError
from layerlab.engine.runtime import syscalls
from layerlab.engine.runtime.child_errors import exit_child, receive_error, report_error
from layerlab.engine.runtime.overlay import mount_overlay
from layerlab.engine.runtime.rootfs import make_mounts_private
from layerlab.engine.runtime.rundir import runtime_dir
from layerlab.engine.runtime.userns import MappingHandshake, host_mapping, needs_user_namespace

log = logging.getLogger(__name__)


def run_in_rootfs(rootfs, fn):
    """Mount `rootfs` (a RootfsSpec) in a forked child's own mount namespace and call fn(merged_path) there.

    An exception from fn, or from the mount, is raised again in the caller:
    a LayerlabError as it is, any other as ContainerError with its message.
    The mount dies with the child, so none is left in the caller's namespace.
    fn's return value is discarded, and its changes to Python objects stay
    in the child. As an ordinary user the child first enters a user
    namespace with the containers' mapping, where fn runs as root.
    """
    handshake = MappingHandshake() if needs_user_namespace() else None
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        _run_child(rootfs, fn, read_fd, write_fd, handshake)

    os.close(write_fd)
    if handshake is not None:
        try:
            handshake.map(pid, host_mapping())
        except BaseException:
            os.close(read_fd)
            os.waitpid(pid, 0)
            raise
    error = receive_error(read_fd)
    _, status = os.waitpid(pid, 0)
    if error is not None:
        raise error
    if status != 0:
        raise ContainerError(f"run_in_rootfs: child exited with status {os.waitstatus_to_exitcode(status)}")


def _run_child(rootfs, fn, read_fd, write_fd, handshake):
    # Runs in the forked child and never returns.
    exit_code = 0
    try:
        os.close(read_fd)
        if handshake is not None:
            handshake.enter()
        syscalls.unshare(syscalls.CLONE_NEWNS)
        make_mounts_private()

        target = runtime_dir("mnt")
        mount_overlay(rootfs, target)
        fn(target)
    except BaseException as error:
        exit_code = 1
        report_error(write_fd, error)
    finally:
        exit_child(exit_code)
