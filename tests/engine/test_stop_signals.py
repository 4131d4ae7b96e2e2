"""A foreground `run` or `build` stopped by SIGINT, SIGTERM or SIGHUP cleans up as Docker's CLI does."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.engine.test_crash import sleeping_containers, wait_gone, wait_started
from tests.engine.test_lifecycle import container_ids

SLEEP_SECONDS = 30


def start_run(store, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "layerlab", "run", *args, "busybox", "sleep", str(SLEEP_SECONDS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, LAYERLAB_ROOT=str(store)), start_new_session=True,
    )


def bridge_endpoints(store):
    path = store / "networks" / "bridge.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text())["endpoints"]


@pytest.mark.parametrize("number, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_run_rm_removed_on_signal(busybox, number, status):
    before = set(sleeping_containers())
    process = start_run(busybox, "--rm")
    started = wait_started(before)

    if number == signal.SIGINT:
        os.killpg(process.pid, number)  # Ctrl-C reaches the whole foreground process group
    else:
        os.kill(process.pid, number)
    process.wait(timeout=30)
    stderr = process.stderr.read()
    process.stdout.close()
    process.stderr.close()

    assert started
    assert process.returncode == status, stderr
    assert "Traceback" not in stderr
    assert wait_gone(started)
    assert container_ids(busybox) == []
    assert bridge_endpoints(busybox) == {}


def test_run_without_rm_kept_on_sigterm(busybox, cli):
    before = set(sleeping_containers())
    process = start_run(busybox)
    started = wait_started(before)

    os.kill(process.pid, signal.SIGTERM)
    process.wait(timeout=30)
    process.stdout.close()
    process.stderr.close()

    assert process.returncode == 143
    assert wait_gone(started)
    assert len(container_ids(busybox)) == 1
    assert "Exited (137)" in cli("ps", "-a").stdout
    assert bridge_endpoints(busybox) == {}


def test_build_stopped_by_sigterm(busybox, tmp_path, cli):
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM busybox\nRUN sleep {SLEEP_SECONDS}\n")
    before = set(sleeping_containers())
    process = subprocess.Popen([sys.executable, "-m", "layerlab", "build", str(context)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, LAYERLAB_ROOT=str(busybox)), start_new_session=True)
    started = wait_started(before, timeout=30)

    started_at = time.monotonic()
    os.kill(process.pid, signal.SIGTERM)
    process.wait(timeout=30)
    stderr = process.stderr.read()
    process.stderr.close()

    assert started
    assert process.returncode == 143, stderr
    assert time.monotonic() - started_at < 10
    assert wait_gone(started)
    assert os.listdir(busybox / "tmp") == []
    assert cli("fsck").stdout == "store is consistent\n"
