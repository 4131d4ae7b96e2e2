"""Prune and fsck --repair wait for builds, pulls and commits that share the store."""

import os
import signal
import subprocess
import sys

import pytest


DOCKERFILE = """\
FROM busybox
RUN echo one > /one
RUN sleep 4
RUN echo done > /done
"""


@pytest.fixture
def running_build(busybox, tmp_path):
    """Start `layerlab build -t gc` and return it once its `RUN sleep 4` step runs."""
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE)
    started = []

    def start():
        process = subprocess.Popen([sys.executable, "-m", "layerlab", "build", "-t", "gc", str(context)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=dict(os.environ, LAYERLAB_ROOT=str(busybox)), start_new_session=True)
        started.append(process)
        seen = []
        for line in process.stdout:
            seen.append(line)
            if line.startswith(" ---> Running in ") and any(text.startswith("Step 3/4") for text in seen):
                break
        return process

    yield start

    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        process.stdout.close()
        process.stderr.close()


def finish(process):
    process.wait(timeout=60)
    return process.stdout.read(), process.stderr.read()


def test_system_prune_waits_for_build(busybox, cli, running_build):
    build = running_build()

    prune = cli("system", "prune", "-af")
    stdout, stderr = finish(build)

    assert build.returncode == 0, stderr
    assert "Successfully tagged gc:latest" in stdout
    assert prune.returncode == 0, prune.stderr
    assert prune.stderr == "waiting for running builds to finish\n"
    assert cli("fsck").stdout == "store is consistent\n"


def test_image_then_builder_prune_during_build(busybox, cli, running_build):
    build = running_build()

    image_prune = cli("image", "prune", "-af")
    builder_prune = cli("builder", "prune", "-af")
    stdout, stderr = finish(build)

    assert build.returncode == 0, stderr
    assert image_prune.returncode == 0, image_prune.stderr
    assert builder_prune.returncode == 0, builder_prune.stderr
    assert "Successfully tagged gc:latest" in stdout
    assert cli("fsck").stdout == "store is consistent\n"


def test_fsck_repair_keeps_build_tmp(busybox, cli, running_build):
    build = running_build()

    repair = cli("fsck", "--repair")
    stdout, stderr = finish(build)

    assert build.returncode == 0, stderr
    assert repair.returncode == 0, repair.stderr
    assert "waiting for running builds to finish" in repair.stderr
    assert cli("fsck").stdout == "store is consistent\n"


def test_fsck_during_build_skips_tmp(busybox, cli, running_build):
    build = running_build()

    check = cli("fsck")
    finish(build)

    assert check.returncode == 0, check.stdout
    assert "from interrupted writes" not in check.stdout
    assert "not checked because a build, pull, push, commit or load is in progress" in check.stdout
    assert build.returncode == 0


def test_prune_wait_interrupted(busybox, running_build):
    build = running_build()
    prune = subprocess.Popen([sys.executable, "-m", "layerlab", "system", "prune", "-af"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, LAYERLAB_ROOT=str(busybox)), start_new_session=True)
    assert prune.stderr.readline() == "waiting for running builds to finish\n"

    os.killpg(prune.pid, signal.SIGINT)
    prune.wait(timeout=10)
    stderr = prune.stderr.read()
    prune.stdout.close()
    prune.stderr.close()
    _, build_stderr = finish(build)

    assert prune.returncode == 130
    assert stderr == "layerlab: interrupted\n"
    assert build.returncode == 0, build_stderr


def test_system_prune_removes_leftovers(busybox, cli):
    # What SIGKILLed writes leave: a blob being written, an unpack and a container removal in progress.
    (busybox / "tmp" / "blob-killed").write_bytes(b"\0" * 3_000_000)
    (busybox / "snapshots" / ".unpack-killed" / "fs").mkdir(parents=True)
    (busybox / "snapshots" / ".unpack-killed" / "fs" / "file").write_bytes(b"\0" * 1_000_000)
    (busybox / "containers").mkdir(exist_ok=True)
    (busybox / "containers" / ".remove-killed").mkdir()

    df = cli("system", "df")
    prune = cli("system", "prune", "-f")

    assert "Temporary files: 4MB left by interrupted writes" in df.stdout
    assert prune.returncode == 0, prune.stderr
    assert os.listdir(busybox / "tmp") == []
    assert not (busybox / "snapshots" / ".unpack-killed").exists()
    assert not (busybox / "containers" / ".remove-killed").exists()
    assert "Total reclaimed space: 4MB" in prune.stdout
    assert "Temporary files" not in cli("system", "df").stdout
