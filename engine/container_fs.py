"""Calling a function on a container's root file system, running or stopped.

A stopped container's root is its overlay, mounted in a forked child's
private mount namespace by `runtime.run_in_rootfs`, so no mount outlives
the call. For a running container the child joins the container's mount
namespace with setns(2) instead, because mounting its upper and work
directories a second time would disturb the live overlay. Either way the
function runs in a child, so its return value comes back as JSON over a
pipe. The parent reads that pipe only after the child exits, so the value
must fit in a pipe buffer (64 KiB on Linux).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable

from layerlab.engine import procfs
from layerlab.engine.errors import ConflictError

log = logging.getLogger(__name__)

# Mount point of the private view of a running container's root, in the child's own mount namespace.
_PRIVATE_ROOT = "/proc"


def call_in_root(engine, record, fn: Callable[[str], Any], *, submounts: bool = True) -> Any:
    """Call fn(root_path) in a child with the container's file system at root_path; return its result.

    With submounts False, a running container's root is seen without the
    file systems mounted on it (/proc, /sys, /dev and bind mounts), as
    `export` needs. A stopped container's overlay never has submounts.
    """
    from layerlab.engine import control

    if control.is_running(engine, record) and procfs.is_namespace_init(record.state.pid):
        return _call_in_namespace(record.state.pid, fn, submounts)
    return _call_on_overlay(record, fn)


def _call_on_overlay(record, fn):
    from layerlab.engine.runtime import RootfsSpec, run_in_rootfs

    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    rootfs = RootfsSpec(list(record.lowerdirs), record.upperdir, record.workdir_overlay)

    def child(root):
        os.close(read_fd)
        _send_result(write_fd, fn(root))

    try:
        run_in_rootfs(rootfs, child)
    finally:
        os.close(write_fd)
    return _receive_result(read_fd)


def _call_in_namespace(init_pid: int, fn, submounts: bool):
    from layerlab.engine.runtime import syscalls
    from layerlab.engine.runtime.child_errors import exit_child, receive_error, report_error
    from layerlab.engine.runtime.rootfs import make_mounts_private

    # A rootless container's mount namespace belongs to its user namespace,
    # which the child joins first. setns(2) into a user namespace needs a
    # single-threaded caller, and a forked child is one.
    names = ("user", "mnt") if os.geteuid() != 0 else ("mnt",)
    namespace_fds = []
    try:
        for name in names:
            namespace_fds.append(os.open(f"/proc/{init_pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC))
    except FileNotFoundError:
        for fd in namespace_fds:
            os.close(fd)
        raise ConflictError(f"container process {init_pid} exited: try again on the stopped container") from None

    error_read, error_write = os.pipe2(os.O_CLOEXEC)
    result_read, result_write = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        exit_code = 0
        try:
            os.close(error_read)
            os.close(result_read)
            if len(namespace_fds) == 2:
                syscalls.setns(namespace_fds[0], syscalls.CLONE_NEWUSER)
            syscalls.setns(namespace_fds[-1], syscalls.CLONE_NEWNS)
            os.chdir("/")
            root = "/"
            if not submounts:
                # A private copy of the namespace, where a non-recursive bind of /
                # shows the container's root file system without what is mounted on it.
                syscalls.unshare(syscalls.CLONE_NEWNS)
                make_mounts_private()
                syscalls.mount("/", _PRIVATE_ROOT, None, syscalls.MS_BIND)
                root = _PRIVATE_ROOT
            _send_result(result_write, fn(root))
        except BaseException as error:
            exit_code = 1
            report_error(error_write, error)
        finally:
            exit_child(exit_code)

    for fd in namespace_fds:
        os.close(fd)
    os.close(error_write)
    os.close(result_write)
    # receive_error closes error_read.
    error = receive_error(error_read)
    os.waitpid(pid, 0)
    if error is not None:
        os.close(result_read)
        raise error
    return _receive_result(result_read)


def _send_result(fd: int, value: Any) -> None:
    os.write(fd, json.dumps(value).encode())


def _receive_result(fd: int) -> Any:
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return json.loads(b"".join(chunks)) if chunks else None
