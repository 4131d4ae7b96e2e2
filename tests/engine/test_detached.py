"""Detached containers through the CLI: run -d, ps, logs, exec, stop, kill, wait, rm -f and crashes of the monitor.

Each test uses its own store with a busybox image made by `layerlab
bootstrap busybox`, and fails if a monitor or a container process of its
store is still alive afterwards.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from layerlab.engine import procfs


CONTAINER_ID = re.compile(r"^[0-9a-f]{64}$")


def _environ(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            return file.read().split(b"\0")
    except OSError:
        return []


def _leftover_pids(store_root, container_ids):
    """Return the live monitors of the store and the processes of the given containers."""
    hostnames = {f"HOSTNAME={container_id[:12]}".encode() for container_id in container_ids}
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid() or not procfs.is_alive(int(name)):
            continue
        argv = procfs.command_line(int(name))
        if "layerlab.engine.monitor" in argv and str(store_root) in argv:
            found.append(int(name))
        elif hostnames & set(_environ(name)):
            found.append(int(name))
    return found


class Detached:
    """Runs CLI commands and remembers the containers they started, for the leftover check."""

    def __init__(self, cli, store_root):
        self.cli = cli
        self.store_root = store_root
        self.container_ids = set()

    def __call__(self, *args, **options):
        return self.cli(*args, **options)

    def run_d(self, *args):
        result = self.cli("run", "-d", *args)
        container_id = result.stdout.strip()
        if CONTAINER_ID.match(container_id):
            self.container_ids.add(container_id)
        return result

    def inspect(self, name):
        result = self.cli("inspect", "--type", "container", name)
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)[0]
        self.container_ids.add(document["Id"])
        return document

    def monitor_pid(self, name):
        path = self.store_root / "containers" / self.inspect(name)["Id"] / "monitor.pid"
        return int(path.read_text())


@pytest.fixture
def detached(cli, store_root):
    result = cli("bootstrap", "busybox")
    assert result.returncode == 0, result.stderr
    helper = Detached(cli, store_root)
    yield helper

    for container_id in helper.container_ids:
        cli("rm", "-f", container_id)
    leftovers = _leftover_pids(store_root, helper.container_ids)
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert leftovers == [], f"processes left running: {leftovers}"


def _wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_run_detached_ps_and_logs(detached):
    result = detached.run_d("--name", "web", "--network", "none", "busybox", "sh", "-c", "echo started; echo oops >&2; sleep 30")
    assert result.returncode == 0, result.stderr
    assert CONTAINER_ID.match(result.stdout.strip())

    listing = detached("ps")
    assert "web" in listing.stdout
    assert re.search(r"Up (Less than a second|\d+ seconds?)", listing.stdout)

    assert _wait_until(lambda: "started" in detached("logs", "web").stdout)
    logs = detached("logs", "web")
    assert logs.stdout == "started\n"
    assert logs.stderr == "oops\n"

    stamped = detached("logs", "-t", "web")
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z started\n$", stamped.stdout)
    assert detached("logs", "--tail", "0", "web").stdout == ""


def test_exec_runs_inside_container(detached):
    container_id = detached.run_d("--name", "box", "--network", "none", "busybox", "sleep", "100").stdout.strip()

    hostname = detached("exec", "box", "hostname")
    assert hostname.returncode == 0, hostname.stderr
    assert hostname.stdout == container_id[:12] + "\n"

    processes = detached("exec", "box", "sh", "-c", "ls /proc | grep -c '^[0-9]'")
    assert int(processes.stdout) < 10

    assert detached("exec", "box", "sh", "-c", "exit 3").returncode == 3

    settings = detached("exec", "-e", "GREETING=hi", "-w", "/tmp", "-u", "nobody", "box",
                        "sh", "-c", 'echo "$GREETING $(pwd) $(id -u)"')
    assert settings.stdout == "hi /tmp 65534\n"

    top = detached("top", "box")
    assert top.stdout.split("\n")[0].split() == ["PID", "USER", "TIME", "COMMAND"]
    assert "sleep 100" in top.stdout


def test_exec_missing_command_is_127(detached):
    detached.run_d("--name", "box", "--network", "none", "busybox", "sleep", "100")

    result = detached("exec", "box", "no-such-command")
    assert result.returncode == 127
    assert 'exec: "no-such-command": executable file not found in $PATH' in result.stderr


def test_exec_in_stopped_container_fails(detached):
    detached.run_d("--name", "done", "--network", "none", "busybox", "true")
    assert detached("wait", "done").stdout == "0\n"

    result = detached("exec", "done", "true")
    assert result.returncode == 1
    assert "is not running" in result.stderr


def test_kill_then_wait_prints_137(detached):
    detached.run_d("--name", "victim", "--network", "none", "busybox", "sleep", "100")

    assert detached("kill", "victim").stdout == "victim\n"
    waited = detached("wait", "victim")
    assert waited.returncode == 0
    assert waited.stdout == "137\n"
    assert "Exited (137)" in detached("ps", "-a").stdout


def test_stop_with_term_trap_exits_0(detached):
    script = 'trap "exit 0" TERM; echo ready; sleep 100 & wait'
    detached.run_d("--name", "polite", "--network", "none", "busybox", "sh", "-c", script)
    assert _wait_until(lambda: "ready" in detached("logs", "polite").stdout)

    assert detached("stop", "polite").stdout == "polite\n"
    assert detached("wait", "polite").stdout == "0\n"


def test_stop_without_handler_kills_after_timeout(detached):
    detached.run_d("--name", "stubborn", "--network", "none", "busybox", "sleep", "100")

    # PID 1 of a namespace ignores SIGTERM without a handler, so only SIGKILL ends it.
    assert detached("stop", "-t", "1", "stubborn").returncode == 0
    assert detached("wait", "stubborn").stdout == "137\n"


def test_logs_follow_ends_with_container(detached):
    detached.run_d("--name", "chatty", "--network", "none", "busybox", "sh", "-c", "echo one; sleep 1; echo two")

    followed = detached("logs", "-f", "chatty", timeout=30)
    assert followed.returncode == 0
    assert followed.stdout == "one\ntwo\n"


def test_run_detached_missing_command_is_127(detached):
    result = detached.run_d("--name", "broken", "--network", "none", "busybox", "no-such-command")
    assert result.returncode == 127
    assert result.stdout == ""
    assert 'exec: "no-such-command": executable file not found in $PATH' in result.stderr

    # Docker keeps a container that failed to start, in the Created state.
    assert "Created" in detached("ps", "-a").stdout
    assert detached.inspect("broken")["State"]["ExitCode"] == 127


def test_start_reruns_on_same_layer(detached):
    detached.run_d("--name", "counter", "--network", "none", "busybox", "sh", "-c", "echo x >> /runs; wc -l < /runs")
    assert detached("wait", "counter").stdout == "0\n"

    attached = detached("start", "-a", "counter")
    assert attached.returncode == 0
    assert attached.stdout == "2\n"
    assert detached("logs", "counter").stdout == "1\n2\n"


def test_restart_gives_new_process(detached):
    detached.run_d("--name", "again", "--network", "none", "busybox", "sleep", "100")
    first_pid = detached.inspect("again")["State"]["Pid"]

    assert detached("restart", "-t", "0", "again").stdout == "again\n"
    second = detached.inspect("again")["State"]
    assert second["Running"]
    assert second["Pid"] != first_pid


def test_run_rm_detached_removes_container(detached, store_root):
    result = detached.run_d("--rm", "--network", "none", "busybox", "true")
    assert result.returncode == 0, result.stderr

    containers = store_root / "containers"
    assert _wait_until(lambda: not [name for name in os.listdir(containers) if not name.startswith(".")])


def test_restart_keeps_rm_container(detached, store_root):
    detached.run_d("--rm", "--name", "rr", "--network", "none", "busybox", "sleep", "600")
    first_pid = detached.inspect("rr")["State"]["Pid"]

    restart = detached("restart", "-t", "1", "rr")

    assert restart.returncode == 0, restart.stderr
    assert restart.stdout == "rr\n"
    state = detached.inspect("rr")["State"]
    assert state["Running"]
    assert state["Pid"] != first_pid
    assert not (store_root / "containers" / detached.inspect("rr")["Id"] / "spare-on-exit").exists()


def test_stop_removes_rm_container_after_restart(detached):
    detached.run_d("--rm", "--name", "rr", "--network", "none", "busybox", "sleep", "600")
    assert detached("restart", "-t", "1", "rr").returncode == 0

    stop = detached("stop", "-t", "1", "rr")

    assert stop.returncode == 0, stop.stderr
    assert stop.stdout == "rr\n"
    assert detached("inspect", "rr").returncode == 1


def test_monitor_killed_then_rm_force(detached):
    detached.run_d("--name", "orphan", "--network", "none", "busybox", "sleep", "100")
    init_pid = detached.inspect("orphan")["State"]["Pid"]
    os.kill(detached.monitor_pid("orphan"), signal.SIGKILL)

    # The container's process outlives its monitor and still counts as running.
    assert _wait_until(lambda: "layerlab.engine.monitor" not in " ".join(procfs.command_line(init_pid)))
    assert "Up" in detached("ps").stdout
    assert "without a monitor" in detached("fsck").stdout

    assert detached("rm", "-f", "orphan").returncode == 0
    assert procfs.wait_for_exit(init_pid, 5)
    assert detached("ps", "-a", "-q").stdout == ""


def test_monitor_and_process_killed_shows_137(detached):
    detached.run_d("--name", "gone", "--network", "none", "busybox", "sleep", "100")
    init_pid = detached.inspect("gone")["State"]["Pid"]
    monitor_pid = detached.monitor_pid("gone")

    os.kill(monitor_pid, signal.SIGKILL)
    assert procfs.wait_for_exit(monitor_pid, 5)
    os.kill(init_pid, signal.SIGKILL)
    assert procfs.wait_for_exit(init_pid, 5)

    repair = detached("fsck", "--repair")
    assert "recorded as exited (137)" in repair.stdout
    assert "Exited (137)" in detached("ps", "-a").stdout
    assert detached("wait", "gone").stdout == "137\n"
    assert detached("rm", "gone").returncode == 0


def test_killed_foreground_run_leaves_no_orphan(detached, store_root):
    env = dict(os.environ, LAYERLAB_ROOT=str(store_root))
    command = [sys.executable, "-m", "layerlab", "run", "--name", "fg", "--network", "none", "busybox", "sleep", "100"]
    launcher = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_until(lambda: detached("ps", "-q").stdout.strip() != "")
        init_pid = detached.inspect("fg")["State"]["Pid"]
    finally:
        launcher.kill()
        launcher.wait()

    assert procfs.wait_for_exit(init_pid, 5)
    assert "Exited (137)" in detached("ps", "-a").stdout
