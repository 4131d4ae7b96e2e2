"""Common command-line mistakes end with Docker's exit status and a clear message.

Each case is one command line, run as `layerlab ...` against a private store
and as `docker ...` against the private Docker Engine 20.10 of the `dockerd`
fixture. Both sides hold the same busybox rootfs under the same name, a
running and a stopped container, and a volume that the stopped container
uses. The test compares the exit statuses exactly and checks that
layerlab's standard error contains the case's key phrase and no traceback.
Where layerlab's wording differs from Docker's on purpose,
docs/compatibility.md lists the difference.
"""

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

import pytest

from tests.engine.conftest import busybox_template  # noqa: F401 (fixture)

IMAGE = "layerlab-test/busybox:cli-errors"
RUNNING = "llerr-running"
STOPPED = "llerr-stopped"
VOLUME = "llerr-volume"
MISSING_CONTAINER = "llerr-no-such-container"
MISSING_IMAGE = "llerr-no-such-image"
TOO_LONG_TAG = "t" * 129


@dataclass(frozen=True)
class Case:
    """A command line with `{context}` standing for the folder of build contexts."""

    name: str
    argv: tuple
    # A phrase that layerlab's standard error must contain.
    phrase: str
    # Docker's command line, when it must differ (to keep Docker off Docker Hub).
    docker_argv: tuple | None = None
    # What both sides must print on standard output, when it matters.
    stdout: str | None = None


def missing_container_cases():
    commands = {
        "stop": ("stop", MISSING_CONTAINER),
        "kill": ("kill", MISSING_CONTAINER),
        "start": ("start", MISSING_CONTAINER),
        "restart": ("restart", MISSING_CONTAINER),
        "logs": ("logs", MISSING_CONTAINER),
        "port": ("port", MISSING_CONTAINER),
        "top": ("top", MISSING_CONTAINER),
        "diff": ("diff", MISSING_CONTAINER),
        "commit": ("commit", MISSING_CONTAINER),
        "exec": ("exec", MISSING_CONTAINER, "true"),
        "cp-from": ("cp", f"{MISSING_CONTAINER}:/etc/hostname", "{context}/copied"),
        "cp-to": ("cp", "{context}/copy-source", f"{MISSING_CONTAINER}:/tmp"),
        "export": ("export", "-o", "{context}/exported.tar", MISSING_CONTAINER),
        "rename": ("rename", MISSING_CONTAINER, "llerr-new-name"),
        "wait": ("wait", MISSING_CONTAINER),
        "pause": ("pause", MISSING_CONTAINER),
        "rm": ("rm", MISSING_CONTAINER),
    }
    return [Case(f"{word}-missing-container", argv, f"No such container: {MISSING_CONTAINER}")
            for word, argv in commands.items()]


CASES = [
    Case("rmi-missing", ("rmi", MISSING_IMAGE), f"No such image: {MISSING_IMAGE}"),
    Case("rmi-in-use", ("rmi", IMAGE), "must force"),
    Case("rmi-uppercase", ("rmi", "Llerr/Upper"), "must be lowercase"),
    *missing_container_cases(),
    Case("rm-running", ("rm", RUNNING), "Stop the container before attempting removal or force remove"),
    Case("rm-force-missing", ("rm", "-f", MISSING_CONTAINER), ""),
    Case("inspect-missing", ("inspect", MISSING_CONTAINER), f"No such object: {MISSING_CONTAINER}", stdout="[]\n"),
    Case("start-running", ("start", RUNNING), ""),
    Case("exec-stopped", ("exec", STOPPED, "true"), "is not running"),
    Case("pause-stopped", ("pause", STOPPED), "is not running"),
    Case("tag-uppercase", ("tag", IMAGE, "Llerr/Upper:1"), "must be lowercase"),
    Case("tag-bad-characters", ("tag", IMAGE, "llerr/tag:bad!tag"), "invalid reference format"),
    Case("tag-too-long", ("tag", IMAGE, f"llerr/tag:{TOO_LONG_TAG}"), "invalid reference format"),
    Case("history-missing", ("history", MISSING_IMAGE), f"No such image: {MISSING_IMAGE}"),
    Case("save-missing", ("save", "-o", "{context}/saved.tar", MISSING_IMAGE), f"No such image: {MISSING_IMAGE}"),
    Case("run-missing-image", ("run", "--rm", "--network", "none", MISSING_IMAGE), "layerlab bootstrap",
         docker_argv=("run", "--rm", "--network", "none", "--pull", "never", MISSING_IMAGE)),
    Case("create-missing-image", ("create", "--network", "none", MISSING_IMAGE), "layerlab bootstrap",
         docker_argv=("create", "--network", "none", "--pull", "never", MISSING_IMAGE)),
    Case("run-unknown-flag", ("run", "--no-such-flag", IMAGE), "unknown flag: --no-such-flag"),
    Case("run-no-image", ("run",), "requires at least 1 argument"),
    Case("rm-no-argument", ("rm",), "requires at least 1 argument"),
    Case("rename-extra-argument", ("rename", STOPPED, "llerr-new-name", "extra"), "more arguments than it accepts"),
    Case("build-missing-context", ("build", "{context}/no-such-folder"), "no-such-folder' is not a directory"),
    Case("build-missing-dockerfile", ("build", "{context}/empty"), "Cannot locate specified Dockerfile"),
    Case("build-unknown-instruction", ("build", "{context}/unknown-instruction"), "unknown instruction: FOO"),
    Case("build-run-fails", ("build", "{context}/run-fails"),
         "The command '/bin/sh -c false' returned a non-zero code: 1"),
    Case("volume-create-invalid-name", ("volume", "create", "bad/name"), "invalid characters"),
    Case("volume-rm-in-use", ("volume", "rm", VOLUME), "volume is in use"),
    Case("network-rm-missing", ("network", "rm", "llerr-no-such-network"), "No such network: llerr-no-such-network"),
    Case("network-rm-bridge", ("network", "rm", "bridge"), "bridge is a pre-defined network"),
    Case("import-not-tar", ("import", "{context}/not-a-tar"), "not a tar archive"),
    Case("commit-run-change", ("commit", "-c", "RUN true", STOPPED, "llerr/committed"), "not a valid change command"),
    Case("ps-unknown-filter", ("ps", "--filter", "colour=red"), "invalid filter 'colour'"),
    Case("create-relative-workdir", ("create", "-w", "relative", IMAGE), "absolute path"),
    Case("create-invalid-memory", ("create", "--memory", "lots", IMAGE), "invalid argument 'lots'"),
    Case("run-relative-workdir", ("run", "--rm", "--network", "none", "-w", "relative", IMAGE), "absolute path"),
    Case("build-empty-build-arg", ("build", "--build-arg", "=x", "{context}/run-fails"), "invalid --build-arg '=x'"),
    Case("unknown-command", ("llerr-no-such-command",), "'llerr-no-such-command' is not a layerlab command"),
    Case("unknown-global-flag", ("--llerr-no-such-flag", "ps"), "unknown flag: --llerr-no-such-flag"),
]


def write_contexts(folder):
    (folder / "empty").mkdir()
    (folder / "not-a-tar").write_text("plain text\n")
    for name, text in (("unknown-instruction", f"FROM {IMAGE}\nFOO bar\n"),
                       ("run-fails", f"FROM {IMAGE}\nRUN false\n")):
        (folder / name).mkdir()
        (folder / name / "Dockerfile").write_text(text)
    (folder / "copy-source").write_text("copied\n")


class Side:
    """One engine's command line, with the scenario's images, containers and volume."""

    def __init__(self, program, env, context):
        self.program = program
        self.env = env
        self.context = context

    def __call__(self, *args, timeout=120):
        argv = [str(arg).replace("{context}", str(self.context)) for arg in args]
        return subprocess.run([*self.program, *argv], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def checked(self, *args):
        result = self(*args)
        assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stderr}"
        return result

    def set_up(self):
        self.checked("volume", "create", VOLUME)
        self.checked("create", "--name", STOPPED, "--network", "none", "-v", f"{VOLUME}:/data", IMAGE, "true")
        self.checked("run", "-d", "--name", RUNNING, "--network", "none", IMAGE, "sleep", "600")

    def tear_down(self):
        self.checked("rm", "-f", RUNNING, STOPPED)
        self.checked("volume", "rm", VOLUME)


@pytest.fixture(scope="module")
def contexts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-errors")
    write_contexts(folder)
    return folder


@pytest.fixture(scope="module")
def ours(busybox_template, tmp_path_factory, contexts):  # noqa: F811 (fixture)
    root = tmp_path_factory.mktemp("cli-errors-store")
    shutil.copytree(busybox_template, root, dirs_exist_ok=True, symlinks=True)
    side = Side([sys.executable, "-m", "layerlab"], dict(os.environ, LAYERLAB_ROOT=str(root)), contexts)
    # The image keeps a single tag, as on Docker's side, so `rmi` of it meets the container that uses it.
    side.checked("tag", "busybox", IMAGE)
    side.checked("rmi", "busybox")
    side.set_up()
    yield side
    side.tear_down()


@pytest.fixture(scope="module")
def theirs(dockerd, busybox_rootfs_tar, contexts):
    dockerd.import_rootfs(busybox_rootfs_tar, IMAGE)
    side = Side([dockerd.docker_client], dict(dockerd.env, DOCKER_BUILDKIT="0"), contexts)
    side.set_up()
    yield side
    side.tear_down()
    side("rmi", IMAGE)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_cli_error(case, ours, theirs):
    layerlab = ours(*case.argv)
    docker = theirs(*(case.docker_argv or case.argv))
    report = (f"layerlab exited {layerlab.returncode}:\n{layerlab.stderr}\n"
              f"docker exited {docker.returncode}:\n{docker.stderr}")

    assert layerlab.returncode == docker.returncode, report
    assert case.phrase in layerlab.stderr, report
    assert "Traceback" not in layerlab.stderr, report
    if case.stdout is not None:
        assert layerlab.stdout == docker.stdout == case.stdout, report
