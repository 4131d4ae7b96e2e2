"""`rmi -f` conflicts and `restart` of a `--rm` container, against Docker Engine 20.10.

Both sides run the same command lines, layerlab on a private store and docker
on the private daemon of the `dockerd` fixture. The tests compare exit
statuses, the "Untagged:" and "Deleted:" lines of the image itself and the
conflict phrases. Docker also prints a "Deleted:" line per layer, which
layerlab does not, so only lines that name the image are compared.
"""

import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.engine.conftest import busybox_template  # noqa: F401 (fixture)

IMAGE = "layerlab-test/busybox:rmi-diff"


class Side:
    """One engine's command line."""

    def __init__(self, program, env):
        self.program = program
        self.env = env

    def __call__(self, *args, timeout=120):
        return subprocess.run([*self.program, *map(str, args)], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def checked(self, *args):
        result = self(*args)
        assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stderr}"
        return result

    def object_id(self, name):
        """Return the full ID of the image or container `name`."""
        return self.checked("inspect", "--format", "{{.Id}}", name).stdout.strip()

    def commit_from(self, base, container, target, path):
        """Make image `target` from `base` plus one file, so that its parent is `base`."""
        self.checked("run", "--name", container, "--network", "none", base, "touch", path)
        self.checked("commit", container, target)
        self.checked("rm", container)


@pytest.fixture
def ours(busybox_template, tmp_path):  # noqa: F811 (fixture)
    root = tmp_path / "store"
    shutil.copytree(busybox_template, root, dirs_exist_ok=True, symlinks=True)
    side = Side([sys.executable, "-m", "layerlab"], dict(os.environ, LAYERLAB_ROOT=str(root)))
    side.checked("tag", "busybox", IMAGE)
    return side


@pytest.fixture
def theirs(dockerd, busybox_rootfs_tar):
    if not dockerd.docker("images", "-q", IMAGE).stdout.strip():
        dockerd.import_rootfs(busybox_rootfs_tar, IMAGE)
    return Side([dockerd.docker_client], dockerd.env)


def image_lines(result, image_id):
    """Return the output lines that untag or delete the image `image_id` itself."""
    return [line for line in result.stdout.splitlines() if line.startswith("Untagged:") or line == f"Deleted: {image_id}"]


def rmi_force_outcomes(side):
    """Run the `rmi -f` scenario on one side and return what to compare, with IDs replaced by names."""
    side.commit_from(IMAGE, "llrmi-a", "llrmi-keep:1", "/a")
    side.commit_from("llrmi-keep:1", "llrmi-b", "llrmi-child:1", "/b")
    keep = side.object_id("llrmi-keep:1")
    child = side.object_id("llrmi-child:1")
    side.checked("run", "-d", "--name", "llrmi-run", "--network", "none", "llrmi-keep:1", "sleep", "600")
    running = side.object_id("llrmi-run")
    names = {keep[7:19]: "KEEP", running[:12]: "RUNNING", keep: "KEEP", child: "CHILD"}

    def outcome(*args):
        result = side(*args)
        text = result.stderr.strip()
        for value, name in names.items():
            text = text.replace(value, name)
        lines = [line.replace(keep, "KEEP").replace(child, "CHILD") for line in image_lines(result, keep)
                 + image_lines(result, child)]
        return result.returncode, sorted(set(lines)), text

    try:
        outcomes = {
            "by-id-with-child": outcome("rmi", "-f", keep[7:19]),
            "by-tag-with-child": outcome("rmi", "-f", "llrmi-keep:1"),
            "kept-untagged": side("inspect", "--format", "{{len .RepoTags}}", keep).stdout.strip(),
            "child": outcome("rmi", "-f", "llrmi-child:1"),
            "by-id-with-running": outcome("rmi", "-f", keep[7:19]),
        }
        side.checked("rm", "-f", "llrmi-run")
        side.checked("tag", keep, "llrmi-keep:2")
        side.checked("create", "--name", "llrmi-stopped", "--network", "none", "llrmi-keep:2", "true")
        names[side.object_id("llrmi-stopped")[:12]] = "STOPPED"
        outcomes["by-tag-with-stopped"] = outcome("rmi", "llrmi-keep:2")
        outcomes["by-id-with-stopped"] = outcome("rmi", keep[7:19])
        outcomes["forced-with-stopped"] = outcome("rmi", "-f", "llrmi-keep:2")
        outcomes["image-after"] = side("inspect", keep).returncode
        outcomes["container-after"] = side("inspect", "--format", "{{.Name}}", "llrmi-stopped").stdout.strip()
    finally:
        side("rm", "-f", "llrmi-run", "llrmi-stopped")
        side("rmi", "-f", "llrmi-child:1", "llrmi-keep:1", "llrmi-keep:2")
    return outcomes


def test_rmi_force_conflicts_match_docker(ours, theirs):
    layerlab = rmi_force_outcomes(ours)
    docker = rmi_force_outcomes(theirs)

    assert layerlab == docker
    assert docker["by-id-with-running"][2] == ("Error response from daemon: conflict: unable to delete KEEP "
                                               "(cannot be forced) - image is being used by running container RUNNING")


def restart_outcomes(side):
    side.checked("run", "-d", "--rm", "--name", "llrmi-rr", "--network", "none", IMAGE, "sleep", "600")
    try:
        restart = side("restart", "-t", "1", "llrmi-rr")
        running_after_restart = side("inspect", "--format", "{{.State.Running}}", "llrmi-rr").stdout.strip()
        stop = side("stop", "-t", "1", "llrmi-rr")
        # Docker removes an AutoRemove container shortly after `stop` returns.
        deadline = time.monotonic() + 20
        while side("inspect", "llrmi-rr").returncode == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        gone_after_stop = side("inspect", "llrmi-rr").returncode != 0
    finally:
        side("rm", "-f", "llrmi-rr")
    return restart.returncode, running_after_restart, stop.returncode, gone_after_stop


def test_restart_keeps_auto_remove_container(ours, theirs):
    layerlab = restart_outcomes(ours)
    docker = restart_outcomes(theirs)

    assert layerlab == docker
    assert docker == (0, "true", 0, True)
