"""Mount points that `run` creates show in `diff` and `commit` as they do in Docker.

Docker 20.10 (runc) creates a missing mount point, and its missing parent
folders, in the container's own layer, so `docker diff` lists them and
`docker commit` keeps them as empty folders or files. Each case runs the same
busybox container under layerlab and under the private `dockerd`, then
compares the `diff` output and the committed image's tree below the mount
point.
"""

import pytest

from tests.engine.conftest import busybox, busybox_template  # noqa: F401 (fixtures)

DOCKER_IMAGE = "layerlab-test/busybox:mountpoints"

# Prints one line per path at or below $1: name, type, mode, owner, group and size.
LIST_TREE = ('find "$1" | sort | while read -r path; do '
             'stat -c "%n %F %a %u %g %s" "$path"; done')

# case id -> (run flags with {dir}, {file} and {volume} placeholders, path whose tree is compared)
CASES = {
    "dir-bind": (["-v", "{dir}:/data/deep"], "/data"),
    "file-bind": (["-v", "{file}:/newfile/inner.txt"], "/newfile"),
    "tmpfs": (["--tmpfs", "/newdir"], "/newdir"),
    "named-volume": (["-v", "{volume}:/named/sub"], "/named"),
    "anonymous-volume": (["-v", "/anon/x"], "/anon"),
    "readonly-mount": (["--mount", "type=bind,src={dir},dst=/mnt2/a,readonly"], "/mnt2"),
    "under-existing-dir": (["-v", "{dir}:/etc/sub/deep"], "/etc/sub"),
    "existing-dir": (["-v", "{dir}:/tmp"], "/tmp"),
    "init": (["--init"], "/sbin/docker-init"),
}


@pytest.fixture(scope="module")
def docker_busybox(dockerd, busybox_rootfs_tar):
    dockerd.import_rootfs(busybox_rootfs_tar, DOCKER_IMAGE)
    return dockerd


@pytest.fixture
def host_paths(tmp_path):
    """A host folder and a host file to bind, each with content that must not reach a committed image."""
    folder = tmp_path / "hostdir"
    folder.mkdir()
    (folder / "content.txt").write_text("host data\n")
    file = tmp_path / "hostfile"
    file.write_text("host file data\n")
    return {"dir": str(folder), "file": str(file)}


def checked(result):
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("case", sorted(CASES))
def test_mountpoint_diff_and_commit(case, busybox, cli, docker_busybox, host_paths):  # noqa: F811 (fixture)
    flag_templates, compared_path = CASES[case]
    name = f"layerlab-mountpoint-{case}"
    image = f"layerlab-test/mountpoint-{case}"
    flags = [flag.format(volume=f"{name}-volume", **host_paths) for flag in flag_templates]
    listing = ["sh", "-c", LIST_TREE, "sh", compared_path]

    try:
        checked(cli("run", "--name", name, "--network", "none", *flags, "busybox", "true"))
        our_diff = checked(cli("diff", name))
        checked(cli("commit", name, image))
        our_tree = checked(cli("run", "--rm", "--network", "none", image, *listing))

        docker_busybox.docker("run", "--name", name, "--network", "none", *flags, DOCKER_IMAGE, "true")
        docker_diff = docker_busybox.docker("diff", name).stdout
        docker_busybox.docker("commit", name, image)
        docker_tree = docker_busybox.docker("run", "--rm", "--network", "none", image, *listing).stdout
    finally:
        docker_busybox.docker("rm", "-f", "-v", name, check=False)
        docker_busybox.docker("rmi", image, check=False)
        docker_busybox.docker("volume", "rm", f"{name}-volume", check=False)

    assert our_diff.splitlines() == docker_diff.splitlines()
    assert our_tree.splitlines() == docker_tree.splitlines()
    assert our_tree, f"the committed image has no {compared_path}"
