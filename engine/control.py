"""Controlling containers that run on their own: start, stop, kill, wait, remove, and their state after crashes.

A running container has a host PID (its init) and, when detached, a
monitor whose PID is in `containers/<id>/monitor.pid`. While the monitor
lives, it alone records the container's exit. When the monitor was
killed, the init may still run, and the container counts as running.
When the init is gone too, its exit code is lost, so the container is
recorded as exited with 137, as if it had been killed.
"""

from __future__ import annotations

import datetime
import logging
import os
import signal

from layerlab.engine import monitor, procfs
from layerlab.engine.containers import ContainerRecord
from layerlab.engine.errors import ConflictError, InvalidArgumentError, NotFoundError

log = logging.getLogger(__name__)

DEFAULT_STOP_TIMEOUT = 10

# How long removal waits for a monitor to record the exit of a killed container.
_MONITOR_EXIT_SECONDS = 10


def monitor_pid(record: ContainerRecord) -> int:
    """Return the PID of the container's live monitor, or 0 when it has none."""
    pid = monitor.read_monitor_pid(record.path)
    if not procfs.is_alive(pid):
        return 0

    # The PID may have been reused since the monitor died, so check its command line.
    argv = procfs.command_line(pid)
    if "layerlab.engine.monitor" not in argv or record.id not in argv:
        return 0
    return pid


def refresh_state(engine, record: ContainerRecord) -> None:
    """Mark a running container exited when both its process and its monitor are gone."""
    if record.state.status != "running":
        return
    if monitor_pid(record) or procfs.is_namespace_init(record.state.pid):
        return

    # The record in memory may predate the exit that the monitor saved just before it exited.
    try:
        saved = engine.containers.get(record.id)
    except NotFoundError:
        return
    if saved.state.status != "running":
        record.state = saved.state
        return

    log.info("container %s (pid %d) and its monitor are gone, so its exit code is lost; recording 137",
             record.id, record.state.pid)
    record.state.status = "exited"
    record.state.exit_code = 128 + signal.SIGKILL
    record.state.finished_at = _now()
    record.state.pid = 0
    engine.containers.save(record)
    _remove_stale_pid_file(record)
    _release_network(engine, record)


def is_running(engine, record: ContainerRecord) -> bool:
    refresh_state(engine, record)
    return record.state.status == "running"


def parse_signal(text: str) -> signal.Signals:
    """Parse a signal as Docker accepts it: `KILL`, `SIGKILL` or `9`."""
    name = text.strip().upper()
    try:
        if name.isdigit():
            return signal.Signals(int(name))
        return signal.Signals[name if name.startswith("SIG") else "SIG" + name]
    except (KeyError, ValueError):
        raise InvalidArgumentError(f"Invalid signal: {text}") from None


def start(engine, record: ContainerRecord) -> int:
    """Run a created or stopped container again on its own writable layer, detached; return its PID."""
    if is_running(engine, record):
        return record.state.pid
    # `create --rm` stores AutoRemove, so the container goes once it exits, as after `run --rm`.
    return monitor.launch(engine, record, remove=bool(record.host_config.get("AutoRemove")))


def restart(engine, record: ContainerRecord, timeout: float | None = None) -> int:
    """Stop the container as `stop` does, then start it again; return the new PID.

    Docker keeps an AutoRemove (`--rm`) container through a restart, so the current
    monitor gets a marker file that makes it keep the record when the container exits.
    """
    current_monitor = monitor_pid(record) if is_running(engine, record) else 0
    if current_monitor:
        monitor.spare_on_exit(record.path, current_monitor)
    try:
        stop(engine, record, timeout)
    finally:
        if current_monitor:
            monitor.clear_spare_on_exit(record.path)
    return start(engine, record)


def send_signal(engine, record: ContainerRecord, sig: int) -> None:
    """Send `sig` to the container's init, as `kill` does."""
    if not is_running(engine, record):
        raise ConflictError(f"Cannot kill container: {record.name}: Container {record.id} is not running")
    if not procfs.is_namespace_init(record.state.pid):
        # Started but not yet recorded, or exiting right now.
        raise ConflictError(f"Cannot kill container: {record.name}: Container {record.id} has no process to signal")

    log.info("sending signal %d to container %s (pid %d)", sig, record.id, record.state.pid)
    try:
        os.kill(record.state.pid, sig)
    except ProcessLookupError:
        pass
    _resume_if_paused(engine, record)


def stop(engine, record: ContainerRecord, timeout: float | None = None) -> None:
    """Send the image's StopSignal (SIGTERM by default), then SIGKILL after `timeout` seconds."""
    if not is_running(engine, record):
        return
    if timeout is None:
        timeout = DEFAULT_STOP_TIMEOUT if record.stop_timeout is None else record.stop_timeout

    # A container's init ignores signals it has no handler for (SIGKILL
    # aside), so the grace period is often spent waiting in vain, as in Docker.
    send_signal(engine, record, stop_signal(engine, record))
    if not procfs.wait_for_exit(record.state.pid, timeout if timeout >= 0 else None):
        log.info("container %s did not stop within %s seconds; killing it", record.id, timeout)
        send_signal(engine, record, signal.SIGKILL)
    try:
        wait(engine, record)
    except NotFoundError:
        if not record.host_config.get("AutoRemove"):
            raise
        # The monitor of a `--rm` container removed it on exit, which is a successful stop, as in Docker.
        log.info("container %s was removed by its monitor after it stopped", record.id)


def stop_signal(engine, record: ContainerRecord) -> int:
    """Return the signal of --stop-signal, else the image's StopSignal, else SIGTERM."""
    if record.stop_signal:
        return parse_signal(record.stop_signal)
    try:
        text = engine.image(record.image_id).settings.get("StopSignal")
    except NotFoundError:
        text = None
    return parse_signal(text) if text else signal.SIGTERM


def wait(engine, record: ContainerRecord) -> int:
    """Wait until the container has stopped and return its exit code."""
    pid = monitor_pid(record)
    if pid:
        procfs.wait_for_exit(pid)
    elif record.state.status == "running" and procfs.is_namespace_init(record.state.pid):
        procfs.wait_for_exit(record.state.pid)

    # NOTE: a container started with `run --rm -d` is gone once its monitor
    # exits, so this raises NotFoundError instead of returning its exit code.
    fresh = engine.containers.get(record.id)
    refresh_state(engine, fresh)
    record.state = fresh.state
    return fresh.state.exit_code


def remove(engine, record: ContainerRecord, *, force: bool) -> None:
    """Remove a container; with force, kill a running one and wait for its monitor first."""
    if is_running(engine, record):
        if not force:
            raise ConflictError(
                f"You cannot remove a running container {record.id}. Stop the container before "
                "attempting removal or force remove"
            )
        if procfs.is_namespace_init(record.state.pid):
            os.kill(record.state.pid, signal.SIGKILL)
            _resume_if_paused(engine, record)
            procfs.wait_for_exit(record.state.pid)
        _wait_for_monitor(record)
    # A monitor or launcher that died left the address, the port rules and maybe the veth behind.
    _release_network(engine, record)

    try:
        engine.containers.remove(record)
    except FileNotFoundError:
        # The monitor of a `run --rm` container removed it first.
        log.info("container %s was already removed by its monitor", record.id)


def _resume_if_paused(engine, record: ContainerRecord) -> None:
    # A frozen process handles no signal, SIGKILL included, until it is thawed,
    # so a signal to a paused container unpauses it, as Docker does.
    if record.state.paused:
        from layerlab.engine.container_admin import resume_after_signal

        resume_after_signal(engine, record)


def _wait_for_monitor(record: ContainerRecord) -> None:
    # The monitor writes to the container's folder until it exits, so removal waits for it.
    pid = monitor_pid(record)
    if pid and not procfs.wait_for_exit(pid, _MONITOR_EXIT_SECONDS):
        log.warning("monitor %d of container %s did not exit; killing it", pid, record.id)
        os.kill(pid, signal.SIGKILL)
        procfs.wait_for_exit(pid)


def _release_network(engine, record: ContainerRecord) -> None:
    if record.network in ("host", "none"):
        return  # keeps these modes free of the network package and pyroute2
    from layerlab.engine import network

    network.release(engine, record)


def _remove_stale_pid_file(record: ContainerRecord) -> None:
    try:
        os.unlink(monitor.pid_file(record.path))
    except FileNotFoundError:
        pass


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def processes(engine, record: ContainerRecord) -> procfs.ProcessesView:
    """List the processes in the container's PID namespace, as `top` does."""
    if not is_running(engine, record) or not procfs.is_namespace_init(record.state.pid):
        raise ConflictError(f"Container {record.id} is not running")
    rows = [procfs.process_row(pid) for pid in procfs.namespace_members(record.state.pid)]
    return procfs.ProcessesView([row for row in rows if row is not None])


def check_containers(engine, *, repair: bool) -> list[str]:
    """Find containers whose monitor died; with repair, record their exit and remove stale monitor.pid files."""
    problems = []
    for record in engine.containers.list():
        has_pid_file = os.path.exists(monitor.pid_file(record.path))
        if monitor_pid(record):
            continue

        if record.state.status == "running" and procfs.is_namespace_init(record.state.pid):
            # A foreground container has no monitor.pid. A detached one that
            # still has it lost its monitor, which nothing can replace, but
            # `stop` and `rm -f` still work on the container.
            if not has_pid_file:
                continue
            problems.append(f"container {record.name} ({record.id[:12]}) runs without a monitor, so its exit code "
                            f"will not be recorded; stop it with `layerlab stop {record.name}`")
            continue

        if record.state.status == "running":
            problems.append(f"container {record.name} ({record.id[:12]}) and its monitor are gone; "
                            "it is recorded as exited (137)")
            if repair:
                refresh_state(engine, record)
        elif has_pid_file:
            problems.append(f"container {record.name} ({record.id[:12]}) has a stale monitor.pid")
            if repair:
                _remove_stale_pid_file(record)
    return problems
