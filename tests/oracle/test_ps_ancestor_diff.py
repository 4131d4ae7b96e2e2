"""`ps --filter ancestor=IMAGE` selects the same containers in layerlab and in Docker.

Docker 20.10 resolves IMAGE to an image ID and matches the containers of
that image and of every image whose parent chain reaches it. So a chain of
`commit`s is followed, and a tag that moved no longer matches the
containers created under it.
"""

import pytest

from tests.engine.conftest import busybox, busybox_template  # noqa: F401 (fixtures)

DOCKER_BASE = "layerlab-test/busybox:ancestor"
CONTAINERS = ("ll-ancestor-base", "ll-ancestor-of-child", "ll-ancestor-of-grandchild")
IMAGES = ("layerlab-test/ancestor-child", "layerlab-test/ancestor-grandchild")


def checked(result):
    assert result.returncode == 0, result.stderr
    return result.stdout


class Side:
    """One engine's commands for the scenario: `run` a container from an image, `commit`, `tag`, `ps`."""

    def __init__(self, command, base):
        self.command = command
        self.base = base

    def run(self, name, image, script):
        checked(self.command("run", "--name", name, "--network", "none", image, "sh", "-c", script))

    def commit(self, name, image):
        checked(self.command("commit", name, image))

    def tag(self, source, target):
        checked(self.command("tag", source, target))

    def matching(self, *images):
        args = []
        for image in images:
            args += ["--filter", f"ancestor={image}"]
        output = checked(self.command("ps", "-a", *args, "--format", "{{.Names}}"))
        # The private dockerd is shared with other tests, so only this scenario's containers count.
        return sorted(name for name in output.split() if name in CONTAINERS)


def build_family(side):
    child, grandchild = IMAGES
    side.run("ll-ancestor-base", side.base, "echo one > /one")
    side.commit("ll-ancestor-base", child)
    side.run("ll-ancestor-of-child", child, "echo two > /two")
    side.commit("ll-ancestor-of-child", grandchild)
    side.run("ll-ancestor-of-grandchild", grandchild, "true")


@pytest.fixture
def sides(busybox, cli, dockerd, busybox_rootfs_tar):  # noqa: F811 (fixture)
    dockerd.import_rootfs(busybox_rootfs_tar, DOCKER_BASE)
    ours = Side(cli, "busybox")
    theirs = Side(lambda *args: dockerd.docker(*args, check=False), DOCKER_BASE)
    try:
        build_family(ours)
        build_family(theirs)
        yield ours, theirs
    finally:
        dockerd.docker("rm", "-f", *CONTAINERS, check=False)
        dockerd.docker("rmi", *IMAGES, DOCKER_BASE, check=False)


def test_ancestor_filter_like_docker(sides):
    ours, theirs = sides
    child, grandchild = IMAGES

    assert theirs.matching(theirs.base) == sorted(CONTAINERS)
    for images in [(ours.base,), (child,), (grandchild,), ("layerlab-test/nothing",), (grandchild, child)]:
        docker_images = [theirs.base if image == ours.base else image for image in images]
        assert ours.matching(*images) == theirs.matching(*docker_images), images


def test_ancestor_after_retag_like_docker(sides):
    ours, theirs = sides
    child, grandchild = IMAGES
    ours.tag(grandchild, ours.base)
    theirs.tag(grandchild, theirs.base)

    assert ours.matching(ours.base) == theirs.matching(theirs.base) == ["ll-ancestor-of-grandchild"]
    assert ours.matching(child) == theirs.matching(child) == ["ll-ancestor-of-child", "ll-ancestor-of-grandchild"]
