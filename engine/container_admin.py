"""`rename`, `pause` and `unpause` of containers.

Pausing uses the cgroup v1 freezer when the host mounts it at
/sys/fs/cgroup/freezer: the container's processes move into
`layerlab/<id>` there, which is then frozen, as runc does. Containers are
not otherwise placed in cgroups yet, so `unpause` moves them back to the
freezer's root and removes the group. Without that freezer (cgroup2-only
hosts, rootless) every process in the container's PID namespace gets
SIGSTOP, and SIGCONT on `unpause`. A stopped process still shows as stopped
to its parent, which the freezer avoids.
"""

from __future__ import annotations

import logging
import os
import signal
import time

from layerlab.engine import procfs
from layerlab.engine.containers import check_container_name
from layerlab.engine.errors import ConflictError, InvalidArgumentError, NotFoundError

log = logging.getLogger(__name__)

FREEZER_ROOT = "/sys/fs/cgroup/freezer"
_FREEZE_TIMEOUT_SECONDS = 10


def rename(engine, record, new_name: str) -> None:
    """Rename a container, as `docker rename` does."""
    new_name = new_name.lstrip("/")
    if not new_name:
        raise InvalidArgumentError("Neither old nor new names may be empty: give a new name")
    check_container_name(new_name)
    if new_name == record.name:
        raise ConflictError("Renaming a container with the same name as its current name: give a different name")
    engine.containers.rename(record, new_name)
    log.info("renamed container %s to %s", record.id, new_name)


def _freezer_group(record) -> str:
    return os.path.join(FREEZER_ROOT, "layerlab", record.id)


def _use_freezer() -> bool:
    return os.geteuid() == 0 and os.path.isfile(os.path.join(FREEZER_ROOT, "cgroup.procs"))


def pause(engine, record) -> None:
    """Freeze every process of a running container."""
    from layerlab.engine import control

    if not control.is_running(engine, record) or not procfs.is_namespace_init(record.state.pid):
        raise ConflictError(f"Container {record.id} is not running: start it first")
    if record.state.paused:
        raise ConflictError(f"Container {record.id} is already paused")

    members = procfs.namespace_members(record.state.pid)
    if _use_freezer():
        group = _freezer_group(record)
        os.makedirs(group, exist_ok=True)
        for pid in members:
            _write(os.path.join(group, "cgroup.procs"), str(pid), missing_ok=True)
        _write(os.path.join(group, "freezer.state"), "FROZEN")
        _wait_for_state(group, "FROZEN")
    else:
        for pid in members:
            _signal(pid, signal.SIGSTOP)
    _save_paused(engine, record, True)


def unpause(engine, record) -> None:
    """Thaw a paused container."""
    from layerlab.engine import control

    if not control.is_running(engine, record) or not record.state.paused:
        raise ConflictError(f"Container {record.id} is not paused")
    resume(record)
    _save_paused(engine, record, False)


def resume(record) -> None:
    """Thaw the container's processes, whichever way `pause` stopped them; a running one is left as it is."""
    group = _freezer_group(record)
    if os.path.isdir(group):
        _write(os.path.join(group, "freezer.state"), "THAWED")
        _wait_for_state(group, "THAWED")
        with open(os.path.join(group, "cgroup.procs")) as procs:
            pids = [line.strip() for line in procs if line.strip()]
        for pid in pids:
            _write(os.path.join(FREEZER_ROOT, "cgroup.procs"), pid, missing_ok=True)
        _remove_group(group)
        return
    if record.state.pid and procfs.is_namespace_init(record.state.pid):
        for pid in procfs.namespace_members(record.state.pid):
            _signal(pid, signal.SIGCONT)


def resume_after_signal(engine, record) -> None:
    """Thaw a paused container that was just sent a signal, and record that it is no longer paused."""
    resume(record)
    try:
        _save_paused(engine, record, False)
    except NotFoundError:
        log.info("container %s was removed while it was resumed", record.id)


def _save_paused(engine, record, paused: bool) -> None:
    # Save over a fresh copy, so the state that the monitor may just have written is kept.
    fresh = engine.containers.get(record.id)
    fresh.state.paused = paused
    engine.containers.save(fresh)
    record.state.paused = paused


def _write(path: str, text: str, *, missing_ok: bool = False) -> None:
    try:
        with open(path, "w") as handle:
            handle.write(text)
    except ProcessLookupError:
        # ESRCH: the process exited between listing and moving it.
        if not missing_ok:
            raise


def _remove_group(group: str) -> None:
    # A process killed while frozen stays in the group until it has exited, so rmdir gets EBUSY until then.
    deadline = time.monotonic() + _FREEZE_TIMEOUT_SECONDS
    while True:
        try:
            os.rmdir(group)
            return
        except OSError as error:
            if time.monotonic() > deadline:
                log.warning("could not remove freezer group %s: %s", group, error)
                return
        time.sleep(0.02)


def _wait_for_state(group: str, expected: str) -> None:
    # The freezer reports FREEZING until every task has stopped.
    deadline = time.monotonic() + _FREEZE_TIMEOUT_SECONDS
    path = os.path.join(group, "freezer.state")
    while time.monotonic() < deadline:
        with open(path) as handle:
            if handle.read().strip() == expected:
                return
        time.sleep(0.01)
    raise ConflictError(f"the freezer group {group} did not reach {expected} within "
                        f"{_FREEZE_TIMEOUT_SECONDS} seconds: check `cat {path}`")


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
