"""The monitor: one small process per detached container, as conmon or a containerd shim.

`launch` starts `python -m layerlab.engine.monitor` in a new session.
That process forks once more and exits, so the monitor is an orphan that
outlives the CLI or kernel that launched it. The monitor holds none of the
caller's file descriptors or locks. It starts the container, appends its
output to `containers/<id>/log`, records the PID, the start time, the exit
code and the end time in the container's record, and removes the container
afterwards when asked (`run --rm -d`).

Handshake: the caller passes the write end of a pipe. The monitor writes
one JSON object to it, `{"pid": N}` once the container's program runs or
`{"error": "...", "exit_code": 127}` if it could not start, then closes it.
So `launch` returns only when the container's fate is known.
"""

from __future__ import annotations

import argparse
import datetime
import errno
import json
import logging
import os
import selectors
import signal
import subprocess
import sys

from layerlab.engine.errors import ContainerError, LayerlabError, NotFoundError

# Named explicitly, because the monitor runs this file as __main__.
log = logging.getLogger("layerlab.engine.monitor")

MONITOR_PID_FILE = "monitor.pid"
MONITOR_LOG_FILE = "monitor.log"
# Contains the PID of a monitor that must not remove its `--rm` container on exit,
# because `restart` is stopping that container to start it again.
SPARE_ON_EXIT_FILE = "spare-on-exit"

_READ_SIZE = 65536


def launch(engine, record, *, remove: bool = False) -> int:
    """Start a monitor that runs `record`'s container; return the container's PID once it runs.

    Raises ContainerError with the exit code that `run` should return (125,
    126 or 127 as Docker) when the container could not start.
    """
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    args = [sys.executable, "-m", "layerlab.engine.monitor", "--root", engine.root, "--handshake-fd", str(write_fd)]
    if remove:
        args.append("--rm")
    args.append(record.id)

    # The monitor's own errors (a traceback before its logging is set up)
    # go to a file in the container's folder, never to the caller's stderr.
    with open(os.path.join(record.path, MONITOR_LOG_FILE), "ab") as monitor_log:
        try:
            first_child = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                           stderr=monitor_log, pass_fds=(write_fd,), start_new_session=True,
                                           cwd="/")
        finally:
            os.close(write_fd)

    # The first child exits as soon as it has forked the monitor.
    first_child.wait()
    reply = _read_reply(read_fd)
    log.debug("monitor of container %s replied %s", record.id, reply)

    if "pid" in reply:
        return int(reply["pid"])
    error = ContainerError(reply.get("error") or f"the monitor of container {record.id} exited before starting it; "
                           f"see {os.path.join(record.path, MONITOR_LOG_FILE)}")
    error.exit_code = int(reply.get("exit_code", 125))
    raise error


def pid_file(container_path: str) -> str:
    return os.path.join(container_path, MONITOR_PID_FILE)


def read_monitor_pid(container_path: str) -> int:
    """Return the PID in the container's monitor.pid, or 0 if there is none."""
    try:
        with open(pid_file(container_path)) as file:
            return int(file.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def spare_on_exit(container_path: str, monitor_pid: int) -> None:
    """Tell the monitor with PID `monitor_pid` to keep its container's record when the container exits."""
    path = os.path.join(container_path, SPARE_ON_EXIT_FILE)
    temporary = f"{path}.{os.getpid()}"
    with open(temporary, "w") as file:
        file.write(f"{monitor_pid}\n")
    os.rename(temporary, path)


def clear_spare_on_exit(container_path: str) -> None:
    try:
        os.unlink(os.path.join(container_path, SPARE_ON_EXIT_FILE))
    except FileNotFoundError:
        pass


def _is_spared(container_path: str) -> bool:
    """Tell whether `restart` asked this monitor process to keep its container."""
    try:
        with open(os.path.join(container_path, SPARE_ON_EXIT_FILE)) as file:
            return file.read().strip() == str(os.getpid())
    except FileNotFoundError:
        return False


def _read_reply(fd: int) -> dict:
    chunks = []
    with os.fdopen(fd, "rb") as pipe:
        while chunk := pipe.read(_READ_SIZE):
            chunks.append(chunk)
    if not chunks:
        return {}
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        return {"error": b"".join(chunks).decode(errors="replace")}


class Monitor:
    """Runs one container to its end and records what happened."""

    def __init__(self, engine, record, remove: bool):
        self.engine = engine
        self.record = record
        self.remove = remove
        self.network = None  # the network attachment to tear down after the exit

    def run(self, handshake_fd: int) -> int:
        _write_pid_file(self.record.path)
        try:
            container, pipes = self._start_container()
        except LayerlabError as error:
            log.info("container %s failed to start: %s", self.record.id, error)
            return self._fail(handshake_fd, str(error), getattr(error, "exit_code", 125) or 125)
        except Exception as error:  # noqa: BLE001 - the caller must get a reply, whatever failed
            log.exception("container %s failed to start", self.record.id)
            return self._fail(handshake_fd, f"{type(error).__name__}: {error}", 125)

        self._record_start(container.pid)
        _reply(handshake_fd, {"pid": container.pid})

        self._copy_output(pipes)
        status = container.wait()
        self._record_exit(status, "")
        self._finish()
        return status

    def _fail(self, handshake_fd: int, message: str, exit_code: int) -> int:
        # Docker leaves a container that failed to start in the Created state, with the exit code.
        self._record_exit(exit_code, message, status="created")
        _reply(handshake_fd, {"error": message, "exit_code": exit_code})
        self._finish()
        return exit_code

    def _start_container(self):
        from layerlab.engine import lifecycle, runtime

        spec = lifecycle.container_spec(self.record)
        self.network = lifecycle.attach_network(self.engine, self.record, spec)
        stdout_read, stdout_write = os.pipe2(os.O_CLOEXEC)
        stderr_read, stderr_write = os.pipe2(os.O_CLOEXEC)
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            container = runtime.start(spec, stdin=devnull, stdout=stdout_write, stderr=stderr_write)
        except BaseException:
            os.close(stdout_read)
            os.close(stderr_read)
            raise
        finally:
            for fd in (stdout_write, stderr_write, devnull):
                os.close(fd)
        if container.terminal_fd is not None:
            # With -t the program writes to its terminal, and the log gets it as stdout, as in Docker.
            os.close(stdout_read)
            os.close(stderr_read)
            return container, {container.terminal_fd: "stdout"}
        return container, {stdout_read: "stdout", stderr_read: "stderr"}

    def _copy_output(self, pipes: dict[int, str]) -> None:
        """Append the container's output to its log until every process has closed both pipes."""
        from layerlab.engine.logs import LogWriter, log_path

        writer = LogWriter(log_path(self.record.path))
        selector = selectors.DefaultSelector()
        for fd in pipes:
            selector.register(fd, selectors.EVENT_READ)

        while selector.get_map():
            for key, _ in selector.select():
                try:
                    data = os.read(key.fd, _READ_SIZE)
                except OSError as error:
                    # A terminal's master reads EIO once the container has closed every slave fd.
                    if error.errno != errno.EIO:
                        raise
                    data = b""
                if data:
                    writer.feed(pipes[key.fd], data)
                    continue
                writer.flush(pipes[key.fd])
                selector.unregister(key.fd)
                os.close(key.fd)
        selector.close()
        writer.close()

    def _record_start(self, pid: int) -> None:
        state = self.record.state
        state.status = "running"
        state.pid = pid
        state.started_at = _now()
        state.exit_code = 0
        state.finished_at = ""
        state.error = ""
        self.engine.containers.save(self.record)

    def _record_exit(self, exit_code: int, error: str, status: str = "exited") -> None:
        state = self.record.state
        state.status = status
        state.exit_code = exit_code
        state.finished_at = _now()
        state.error = error
        state.pid = 0
        self.engine.containers.save(self.record)
        log.info("container %s exited with code %d", self.record.id, exit_code)

    def _finish(self) -> None:
        if self.network is not None:
            self.network.teardown()

        # The PID file goes last: while the monitor is alive, it alone writes the record.
        if self.remove and _is_spared(self.record.path):
            log.info("container %s is restarting, so its record stays", self.record.id)
        elif self.remove:
            try:
                self.engine.containers.remove(self.record)
            except (FileNotFoundError, NotFoundError):
                log.info("container %s was already removed", self.record.id)
            return
        try:
            os.unlink(pid_file(self.record.path))
        except FileNotFoundError:
            pass


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def _write_pid_file(container_path: str) -> None:
    path = pid_file(container_path)
    temporary = f"{path}.{os.getpid()}"
    with open(temporary, "w") as file:
        file.write(f"{os.getpid()}\n")
    os.rename(temporary, path)


def _reply(fd: int, message: dict) -> None:
    with os.fdopen(fd, "wb") as pipe:
        pipe.write(json.dumps(message).encode())


def _parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m layerlab.engine.monitor",
                                     description="Run one container detached and record its exit (started by `run -d`).")
    parser.add_argument("--root", required=True, help="the store (LAYERLAB_ROOT)")
    parser.add_argument("--handshake-fd", type=int, required=True, help="pipe to report the start on")
    parser.add_argument("--rm", action="store_true", help="remove the container after it exits")
    parser.add_argument("container_id")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    options = _parse_args(argv)

    # Popen put the first child in a new session. Forking again leaves a
    # process that is no session leader, so it can never acquire a
    # controlling terminal, and that init (or a subreaper) adopts.
    if os.fork() != 0:
        os._exit(0)

    os.set_inheritable(options.handshake_fd, False)
    for name in (signal.SIGHUP, signal.SIGINT):
        signal.signal(name, signal.SIG_IGN)
    level = logging.DEBUG if os.environ.get("LAYERLAB_DEBUG") else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from layerlab.engine.api import Engine

    engine = Engine(options.root)
    try:
        record = engine.containers.get(options.container_id)
    except NotFoundError as error:
        _reply(options.handshake_fd, {"error": str(error), "exit_code": 125})
        return 125
    return Monitor(engine, record, options.rm).run(options.handshake_fd)


if __name__ == "__main__":
    sys.exit(main())
