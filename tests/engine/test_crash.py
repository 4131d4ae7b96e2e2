"""A build killed or interrupted during a RUN step leaves a consistent store behind."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import mounts_under

SLEEP_SECONDS = 30
DOCKERFILE = f"""\
FROM busybox
RUN echo one > /one
RUN sleep {SLEEP_SECONDS}
RUN echo done > /done
"""


@pytest.fixture
def context(tmp_path):
    path = tmp_path / "context"
    path.mkdir()
    (path / "Dockerfile").write_text(DOCKERFILE)
    return path


def sleeping_containers():
    """Return the pids of processes running this file's `sleep` command."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as cmdline:
                args = cmdline.read().split(b"\0")
        except OSError:
            continue
        if args[:2] == [b"sleep", str(SLEEP_SECONDS).encode()]:
            found.append(int(name))
    return found


def wait_started(before, timeout=10.0):
    """Return the `sleep` pids that were not in `before`, once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = set(sleeping_containers()) - before
        if new:
            return new
        time.sleep(0.05)
    return set()


def wait_gone(pids, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(os.path.exists(f"/proc/{pid}") for pid in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def interrupted_build(busybox, context):
    """Start `layerlab build` and return (process, output so far) once step 3 is running."""
    started = []
    before = set(sleeping_containers())

    def start():
        process = subprocess.Popen(
            [sys.executable, "-m", "layerlab", "build", "-t", "crash", str(context)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, LAYERLAB_ROOT=str(busybox)), start_new_session=True,
        )
        started.append(process)
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith(" ---> Running in ") and any(seen.startswith("Step 3/4") for seen in lines):
                break
        return process, lines

    yield start

    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        process.stdout.close()
        process.stderr.close()
    # A container left behind by a failing check must not outlive the test.
    for pid in set(sleeping_containers()) - before:
        os.kill(pid, signal.SIGKILL)


def test_sigkill_store_consistent(busybox, cli, interrupted_build):
    process, _ = interrupted_build()

    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    fsck = cli("fsck")

    assert "does not match" not in fsck.stdout
    assert "lacks blobs" not in fsck.stdout
    assert "Traceback" not in fsck.stderr


def test_sigkill_repair_cleans_tmp(busybox, cli, interrupted_build):
    process, _ = interrupted_build()
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    repair = cli("fsck", "--repair")
    check = cli("fsck")

    assert repair.returncode == 0
    assert check.returncode == 0
    assert check.stdout == "store is consistent\n"
    assert os.listdir(busybox / "tmp") == []


def test_sigkill_leaves_no_mount(busybox, interrupted_build):
    process, _ = interrupted_build()

    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    assert mounts_under(busybox) == []


def test_sigkill_kills_container(busybox, interrupted_build):
    before = set(sleeping_containers())
    process, _ = interrupted_build()
    started = wait_started(before)

    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    assert started
    assert wait_gone(started)


def test_sigkill_rebuild_uses_cache(busybox, cli, context, interrupted_build):
    process, _ = interrupted_build()
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    (context / "Dockerfile").write_text(DOCKERFILE.replace(f"sleep {SLEEP_SECONDS}", "sleep 0"))

    rebuild = cli("build", "-t", "crash", str(context))

    assert rebuild.returncode == 0, rebuild.stderr
    step2 = rebuild.stdout.split("Step 2/4")[1].split("Step 3/4")[0]
    assert " ---> Using cache" in step2
    assert cli("run", "--rm", "crash", "cat", "/one").stdout == "one\n"


def test_sigint_exit_code(busybox, interrupted_build):
    process, _ = interrupted_build()

    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=30)
    stderr = process.stderr.read()

    assert process.returncode == 130
    assert stderr == "layerlab: interrupted\n"


def test_sigint_cleans_up(busybox, cli, interrupted_build):
    before = set(sleeping_containers())
    process, _ = interrupted_build()
    started = wait_started(before)

    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=30)

    assert started
    assert wait_gone(started)
    assert mounts_under(busybox) == []
    assert os.listdir(busybox / "tmp") == []
    assert cli("fsck").stdout == "store is consistent\n"


def test_sigint_rebuild_uses_cache(busybox, cli, context, interrupted_build):
    process, _ = interrupted_build()
    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=30)
    (context / "Dockerfile").write_text(DOCKERFILE.replace(f"sleep {SLEEP_SECONDS}", "sleep 0"))

    rebuild = cli("build", "-t", "crash", str(context))

    assert rebuild.returncode == 0, rebuild.stderr
    assert rebuild.stdout.count(" ---> Using cache") == 1
