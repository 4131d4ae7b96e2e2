"""COPY and ADD sources that are symlinks: followed inside the context or stage root, never outside it."""

import os
import tempfile

import pytest

from layerlab.engine.api import Engine
from layerlab.engine.build import BuildRequest, Builder
from layerlab.engine.build import events as build_events
from layerlab.engine.errors import DockerfileError
from layerlab.engine.unpack import apply_layer
from tests.build_oracle.conftest import import_like_docker


@pytest.fixture
def engine(store_root, busybox_rootfs_tar):
    engine = Engine(str(store_root))
    import_like_docker(engine, busybox_rootfs_tar, "busybox:latest")
    return engine


@pytest.fixture
def context(tmp_path):
    path = tmp_path / "context"
    path.mkdir()
    (tmp_path / "outside.txt").write_text("secret\n")
    return path


def build(engine, context, dockerfile):
    (context / "Dockerfile").write_text(dockerfile)
    steps = []
    result = Builder(engine).build(BuildRequest(context=str(context)), steps.append)
    return engine.images.resolve(result.image_id), steps


def unpack(engine, image, tmp_path):
    root = tempfile.mkdtemp(dir=tmp_path)
    for layer in image.layers:
        with open(engine.store.blob_path(layer.digest), "rb") as blob:
            apply_layer(blob, root)
    return root


def read(engine, image, tmp_path, path):
    with open(os.path.join(unpack(engine, image, tmp_path), path)) as handle:
        return handle.read()


def test_relative_link_outside_context(engine, context):
    os.symlink("../outside.txt", context / "rel-link")

    with pytest.raises(DockerfileError) as caught:
        build(engine, context, "FROM busybox\nCOPY rel-link /x\n")

    assert caught.value.line == 2
    assert "resolves to 'outside.txt'" in str(caught.value)


def test_relative_link_resolves_at_context_root(engine, context, tmp_path):
    (context / "outside.txt").write_text("inside\n")
    os.symlink("../outside.txt", context / "rel-link")

    image, _ = build(engine, context, "FROM busybox\nCOPY rel-link /x\n")

    assert read(engine, image, tmp_path, "x") == "inside\n"


def test_absolute_link_resolves_in_context(engine, context, tmp_path):
    (context / "real.txt").write_text("inside\n")
    os.symlink(str(tmp_path / "outside.txt"), context / "abs-missing")
    os.symlink("/real.txt", context / "abs-link")

    image, _ = build(engine, context, "FROM busybox\nCOPY abs-link /x\n")

    assert read(engine, image, tmp_path, "x") == "inside\n"
    with pytest.raises(DockerfileError) as caught:
        build(engine, context, "FROM busybox\nCOPY abs-missing /x\n")
    assert caught.value.line == 2
    assert "not there" in str(caught.value)


def test_wildcard_link_outside_context(engine, context):
    (context / "rel-a").write_text("a\n")
    os.symlink("../outside.txt", context / "rel-link")

    with pytest.raises(DockerfileError) as caught:
        build(engine, context, "FROM busybox\nCOPY rel-* /d/\n")

    assert "rel-link" in str(caught.value)


def test_wildcard_skips_linked_directory(engine, context):
    (context / "a.txt").write_text("a\n")
    os.symlink("/", context / "up")

    with pytest.raises(DockerfileError) as caught:
        build(engine, context, "FROM busybox\nCOPY up/*.txt /d/\n")

    assert "not found" in str(caught.value)


def test_intermediate_link_resolves_in_context(engine, context, tmp_path):
    (context / "a.txt").write_text("a\n")
    os.symlink("../..", context / "up")

    image, _ = build(engine, context, "FROM busybox\nCOPY up/a.txt /x\n")

    assert read(engine, image, tmp_path, "x") == "a\n"


def test_link_keeps_its_name(engine, context, tmp_path):
    (context / "real.txt").write_text("real\n")
    os.symlink("real.txt", context / "link.txt")

    image, _ = build(engine, context, "FROM busybox\nCOPY link.txt /d/\n")
    root = unpack(engine, image, tmp_path)

    assert not os.path.islink(os.path.join(root, "d/link.txt"))
    assert open(os.path.join(root, "d/link.txt")).read() == "real\n"


def test_links_inside_directory_stay_links(engine, context, tmp_path):
    (context / "dir").mkdir()
    os.symlink("../../outside.txt", context / "dir" / "inner")
    os.symlink("dir", context / "dir-link")

    image, _ = build(engine, context, "FROM busybox\nCOPY dir-link /d/\n")
    root = unpack(engine, image, tmp_path)

    assert os.readlink(os.path.join(root, "d/inner")) == "../../outside.txt"


def test_cache_follows_link_target(engine, context, tmp_path):
    (context / "real.txt").write_text("one\n")
    os.symlink("real.txt", context / "link.txt")
    dockerfile = "FROM busybox\nCOPY link.txt /x\n"
    build(engine, context, dockerfile)

    (context / "real.txt").write_text("two\n")
    image, steps = build(engine, context, dockerfile)

    assert not any(isinstance(event, build_events.StepCached) for event in steps)
    assert read(engine, image, tmp_path, "x") == "two\n"


def test_cache_follows_link_target_mode(engine, context):
    (context / "real.sh").write_text("echo\n")
    os.symlink("real.sh", context / "link.sh")
    dockerfile = "FROM busybox\nCOPY link.sh /x\n"
    build(engine, context, dockerfile)

    os.chmod(context / "real.sh", 0o755)
    _, steps = build(engine, context, dockerfile)

    assert not any(isinstance(event, build_events.StepCached) for event in steps)


def test_copy_from_link_stays_in_stage(engine, context, tmp_path):
    dockerfile = ("FROM busybox AS source\n"
                  "RUN echo stage > /target && ln -s ../../../../../../target /link\n"
                  "FROM busybox\nCOPY --from=source /link /x\n")

    image, _ = build(engine, context, dockerfile)

    assert read(engine, image, tmp_path, "x") == "stage\n"


def test_copy_from_overlap_not_followed(engine, context, tmp_path):
    escape = tmp_path / "escape"
    escape.mkdir()
    up = "../" * 40
    dockerfile = ("FROM busybox AS source\n"
                  f"RUN mkdir -p /a {escape} && ln -s {up}{escape} /a/l && echo written > {escape}/x\n"
                  "FROM busybox\nCOPY --from=source /a /a/l/x /dest/\n")

    with pytest.raises(DockerfileError) as caught:
        build(engine, context, dockerfile)

    assert "overlap" in str(caught.value)
    assert not (escape / "x").exists()


def test_copy_from_dangling_link(engine, context):
    dockerfile = "FROM busybox AS source\nRUN ln -s /nowhere /dangling\nFROM busybox\nCOPY --from=source /dangling /x\n"

    with pytest.raises(DockerfileError) as caught:
        build(engine, context, dockerfile)

    assert caught.value.line == 4
    assert "'/nowhere', which is not found" in str(caught.value)
    assert "Error:" not in str(caught.value)
