"""`ps --filter ancestor=IMAGE`: containers of IMAGE and of images built on top of it, through the CLI."""

import pytest


def run_stopped(cli, name, image, script="true"):
    result = cli("run", "--network", "none", "--name", name, image, "sh", "-c", script)
    assert result.returncode == 0, result.stderr


def checked(result):
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def family(busybox, cli, context):
    """Containers of busybox, of a committed child and grandchild, and of a built child, by name."""
    run_stopped(cli, "base", "busybox", "echo one > /one")
    checked(cli("commit", "base", "child"))
    run_stopped(cli, "of-child", "child", "echo two > /two")
    checked(cli("commit", "of-child", "grandchild"))
    run_stopped(cli, "of-grandchild", "grandchild")

    (context / "Dockerfile").write_text("FROM busybox\nRUN echo built > /built\n")
    checked(cli("build", "-t", "built", str(context)))
    run_stopped(cli, "of-built", "built")
    return cli


def names(cli, *filters):
    args = []
    for value in filters:
        args += ["--filter", f"ancestor={value}"]
    return sorted(checked(cli("ps", "-a", *args, "--format", "{{.Names}}")).split())


def test_ancestor_matches_descendants(family):
    assert names(family, "busybox") == ["base", "of-built", "of-child", "of-grandchild"]
    assert names(family, "child") == ["of-child", "of-grandchild"]
    assert names(family, "grandchild") == ["of-grandchild"]
    assert names(family, "built") == ["of-built"]


def test_ancestor_by_image_id(family):
    image_id = checked(family("inspect", "--format", "{{.Id}}", "busybox")).strip()

    assert names(family, image_id) == ["base", "of-built", "of-child", "of-grandchild"]
    assert names(family, image_id.removeprefix("sha256:")[:12]) == ["base", "of-built", "of-child", "of-grandchild"]


def test_ancestor_values_are_alternatives(family):
    assert names(family, "grandchild", "built") == ["of-built", "of-grandchild"]


def test_ancestor_unknown_image(family):
    assert names(family, "nothing") == []
    assert names(family, "nothing", "built") == ["of-built"]


def test_ancestor_follows_moved_tag(family):
    # The name a container was created with is not compared: `busybox` now
    # names the built image, so only containers of it and its children match.
    checked(family("tag", "built", "busybox"))

    assert names(family, "busybox") == ["of-built"]
