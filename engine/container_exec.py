"""`exec`: a process run inside a running container, with the container's env, user and working directory."""

from __future__ import annotations

import dataclasses
import logging

from layerlab.engine import control, procfs
from layerlab.engine.containers import ContainerRecord
from layerlab.engine.errors import ConflictError, InvalidArgumentError

log = logging.getLogger(__name__)


def run(engine, record: ContainerRecord, args: list[str], *, env: list[str], user: str | None, workdir: str,
        privileged: bool = False, stdio=(None, None, None)) -> int:
    """Run `args` in the container and return its exit code.

    `-e` values go over the container's environment, and user and working
    directory default to the container's. The process has the container's
    capabilities and seccomp filter, or with `privileged` every capability
    and no filter. Raises ConflictError when the
    container is not running, and ContainerError (exit code 126 or 127)
    when the program cannot be executed.
    """
    from layerlab.engine.lifecycle import merge_env
    from layerlab.engine.run_options import security_of
    from layerlab.engine.runtime import ProcessSpec
    from layerlab.engine.runtime.exec import exec_process

    if not args:
        raise InvalidArgumentError("exec needs a command: give it after the container name")
    if not control.is_running(engine, record) or not procfs.is_namespace_init(record.state.pid):
        raise ConflictError(f"Container {record.id} is not running")

    process = ProcessSpec(
        args=list(args),
        env=merge_env(record.env, env),
        cwd=workdir or record.workdir,
        user=record.user if user is None else user,
    )
    security = security_of(record)
    if privileged:
        security = dataclasses.replace(security, privileged=True)
    started = exec_process(record.state.pid, process, join_network=record.network != "host", security=security,
                           stdio=stdio)
    try:
        return started.wait()
    except BaseException:
        # Interrupted (Ctrl-C): the process must not outlive the command that ran it.
        started.kill()
        started.wait()
        raise
