"""Image names over index.json: tags, ID prefixes, untagged images, cache entries."""

import shutil

import pytest

from layerlab.engine.api import Engine
from layerlab.engine.errors import NotFoundError
from layerlab.engine.image import ImageDraft, write_image
from layerlab.engine.reference import Reference
from layerlab.engine.store import ANNOTATION_CACHE_KEY, ANNOTATION_REF_NAME


@pytest.fixture
def engine(store_root, busybox_template):
    shutil.copytree(busybox_template, store_root, dirs_exist_ok=True, symlinks=True)
    return Engine(str(store_root))


def derived(engine, label):
    """Write an image on top of busybox that differs only by a label."""
    draft = ImageDraft.from_image(engine.image("busybox"))
    draft.settings["Labels"] = {"test": label}
    draft.add_history(f"/bin/sh -c #(nop)  LABEL test={label}", empty_layer=True)
    return write_image(engine.store, draft)


def test_resolve_by_name(engine):
    assert engine.image("busybox").id == engine.image("docker.io/library/busybox:latest").id


def test_resolve_by_id(engine):
    image_id = engine.image("busybox").id

    assert engine.image(image_id).id == image_id
    assert engine.image(image_id.removeprefix("sha256:")).id == image_id
    assert engine.image(image_id.removeprefix("sha256:")[:12]).id == image_id


def test_resolve_missing(engine):
    with pytest.raises(NotFoundError) as caught:
        engine.image("nothere:1")

    assert "nothere:1" in str(caught.value)


def test_tag_adds_name(engine):
    engine.tag("busybox", "box:v1")

    assert engine.image("box:v1").id == engine.image("busybox").id


def test_retag_leaves_untagged(engine):
    old = derived(engine, "old")
    new = derived(engine, "new")
    engine.images.tag(old, Reference.parse("app"))

    engine.images.tag(new, Reference.parse("app"))
    rows = engine.list_images().rows

    assert engine.image("app").id == new.id
    assert any(row.image_id == old.id and row.repository == "<none>" for row in rows)


def test_untagged_gone_after_tag(engine):
    image = derived(engine, "a")
    engine.images.add_untagged(image)

    engine.images.tag(image, Reference.parse("named"))
    ids = [row.image_id for row in engine.list_images().rows]

    assert ids.count(image.id) == 1


def test_remove_image_keeps_other_tag(engine):
    engine.tag("busybox", "box:v1")

    lines = engine.remove_image("box:v1")

    assert lines == ["Untagged: box:v1"]
    assert engine.image("busybox")


def test_remove_by_id_with_two_tags(engine):
    engine.tag("busybox", "box:v1")
    image_id = engine.image("busybox").id

    lines = engine.remove_image(image_id[7:19], force=True)

    assert "Untagged: busybox:latest" in lines
    assert "Untagged: box:v1" in lines
    assert lines[-1] == f"Deleted: {image_id}"


def test_cache_entries_not_listed(engine):
    image = derived(engine, "cached")

    engine.images.cache_put("sha256:" + "0" * 64, image, parent=engine.image("busybox").id)

    assert image.id not in [row.image_id for row in engine.list_images().rows]
    assert engine.images.cache_lookup()["sha256:" + "0" * 64].annotations[ANNOTATION_CACHE_KEY]


def test_cache_entry_has_no_ref_name(engine):
    image = derived(engine, "cached")

    engine.images.cache_put("sha256:" + "1" * 64, image, parent=None)
    entry = engine.images.cache_lookup()["sha256:" + "1" * 64]

    assert ANNOTATION_REF_NAME not in entry.annotations


def test_parent_link(engine):
    base = engine.image("busybox")
    image = derived(engine, "child")

    engine.images.tag(image, Reference.parse("child"), parent=base.id)

    assert engine.images.parent_of(image.id) == base.id


def test_prune_cache_count(engine):
    image = derived(engine, "cached")
    engine.images.cache_put("sha256:" + "2" * 64, image, parent=None)

    removed = engine.images.prune_cache()

    assert removed == 1
    assert engine.images.cache_lookup() == {}


def test_images_filter_repository(engine):
    engine.tag("busybox", "other:1")

    rows = engine.list_images(repository="other").rows

    assert [(row.repository, row.tag) for row in rows] == [("other", "1")]


def test_tag_rejects_digest_reference(engine):
    from layerlab.engine.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="refusing to create a tag with a digest reference"):
        engine.tag("busybox", "busybox@sha256:" + "a" * 64)

    assert engine.images.find_descriptor("busybox@sha256:" + "a" * 64) is None


def test_digest_lookup_needs_matching_manifest(engine):
    image = engine.image("busybox")

    assert engine.image(f"busybox@{image.manifest_digest}").id == image.id
    assert engine.images.find_descriptor(f"other@{image.manifest_digest}") is None
    assert engine.images.find_descriptor("busybox@sha256:" + "b" * 64) is None


def test_images_digests_column_without_registry(cli, engine):
    result = cli("images", "--digests")

    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()[:2]
    assert header.split()[:3] == ["REPOSITORY", "TAG", "DIGEST"]
    assert row.split()[:3] == ["busybox", "latest", "<none>"]


def test_cli_tag_digest_exits_one(cli, engine):
    result = cli("tag", "busybox", "busybox@sha256:" + "a" * 64)

    assert result.returncode == 1
    assert result.stderr.startswith("refusing to create a tag with a digest reference")
