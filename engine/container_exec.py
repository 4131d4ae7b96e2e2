"""`exec`: a process run inside a running container, with the container's env, user and working directory."""

from __future__ import annotations

import dataclasses
import logging
import os

from layerlab.engine import control, procfs
from layerlab.engine.containers import ContainerRecord
from layerlab.engine.errors import ConflictError, FlagValueError, InvalidArgumentError

log = logging.getLogger(__name__)


def run(engine, record: ContainerRecord, args: list[str], *, env: list[str], user: str | None, workdir: str,
        privileged: bool = False, stdio=(None, None, None), tty: bool = False, interactive: bool = False,
        detach: bool = False) -> int:
    """Run `args` in the container and return its exit code.

    `-e` values go over the container's environment, and user and working
    directory default to the container's. The process has the container's
    capabilities and seccomp filter; `privileged` gives it every capability
    and keeps the filter, as Docker's `exec --privileged` does.

    Raises ConflictError when the container is not running, and
    ContainerError (exit code 126 or 127) when the program cannot be
    executed.

    With `tty` the process gets a pseudo-terminal in the container, and
    its output is copied to stdio[1]; `interactive` also copies stdio[0]
    (None for ours) to it. With `detach` the process runs on after this
    returns 0, with /dev/null as its fds 0-2, and stdio is not used.
    """
    from layerlab.engine.lifecycle import merge_env
    from layerlab.engine.run_options import security_of
    from layerlab.engine.runtime import ProcessSpec
    from layerlab.engine.runtime.exec import exec_process

    if not args:
        raise InvalidArgumentError("exec needs a command: give it after the container name")
    if detach and tty:
        # TODO: a detached terminal needs a process that keeps its master
        # open and reads it, as Docker's containerd-shim does. Until then the
        # flags are rejected as an invalid combination, with the flag status 125.
        raise FlagValueError("exec -d with -t is not supported: run the detached command without -t")
    if not control.is_running(engine, record) or not procfs.is_namespace_init(record.state.pid):
        raise ConflictError(f"Container {record.id} is not running")

    process = ProcessSpec(
        args=list(args),
        env=merge_env(record.env, env),
        cwd=workdir or record.workdir,
        user=record.user if user is None else user,
        terminal=tty,
    )
    security = security_of(record)
    if privileged:
        security = dataclasses.replace(security, cap_add=("ALL",), cap_drop=())
    join_network = record.network != "host"

    if detach:
        # Docker discards the output of a detached exec.
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            exec_process(record.state.pid, process, join_network=join_network, security=security,
                         stdio=(devnull, devnull, devnull), detach=True)
        finally:
            os.close(devnull)
        return 0

    started = exec_process(record.state.pid, process, join_network=join_network, security=security, stdio=stdio)
    try:
        if started.terminal_fd is not None:
            _relay_terminal(started, stdio, interactive)
        return started.wait()
    except BaseException:
        # Interrupted (Ctrl-C): the process must not outlive the command that ran it.
        started.kill()
        started.wait()
        raise


def _relay_terminal(started, stdio, interactive: bool) -> None:
    from layerlab.engine.runtime import terminal

    exit_fd = started.open_pidfd()
    try:
        terminal.relay_session(started.terminal_fd, stdio[0], stdio[1], interactive, exit_fd)
    finally:
        if exit_fd is not None:
            os.close(exit_fd)
