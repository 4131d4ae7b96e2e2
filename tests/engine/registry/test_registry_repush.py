"""Pulled images pushed again: the registry's manifest is sent unchanged when its layer blobs are reachable.

Docker (for a schema 2 image whose layer blobs it reuses) and podman or
skopeo (when nothing needs converting) keep a pulled image's manifest
digest when they push it to another repository of the same registry.
These tests check layerlab against manifests that Docker Engine and podman
pushed to a real docker-registry, and check the fallback to a new OCI
manifest when the layer blobs are out of reach or the image changed.
"""

import hashlib
import json
import os
import re
import urllib.request

import pytest

from layerlab.engine.api import Engine
from layerlab.engine.images import registry_manifest_blobs
from layerlab.engine.registry.pull import pull
from layerlab.engine.registry.push import push
from tests.engine.registry.conftest import import_busybox, start_registry, stored_manifest
from tests.engine.registry.test_registry_interop import DOCKER_MANIFEST, OCI_MANIFEST, pushed_digest

OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


@pytest.fixture(scope="module")
def other_registry(tmp_path_factory):
    """A second registry, which has none of the first one's blobs."""
    server = start_registry(tmp_path_factory)
    yield server
    server.stop()


@pytest.fixture
def docker_images(dockerd):
    """Names to remove from the session's dockerd when the test ends."""
    names = []
    yield names
    for name in names:
        dockerd.docker("rmi", "--force", name, check=False)


def push_with_docker(dockerd, docker_images, busybox_rootfs_tar, name):
    """Import busybox into dockerd as `name` and push it; return the pushed digest."""
    docker_images.append(name)
    dockerd.import_rootfs(busybox_rootfs_tar, name)
    return pushed_digest(dockerd.docker("push", name).stdout)


def push_with_podman(podman, busybox_rootfs_tar, name, digest_file):
    """Import busybox into podman as `name` and push it with podman's default (OCI) format; return the digest."""
    podman.import_rootfs(busybox_rootfs_tar, name)
    podman.podman("push", "--tls-verify=false", "--digestfile", digest_file, name)
    return digest_file.read_text().strip()


def pull_tag_push(cli, source, target):
    """Pull `source`, tag it `target`, push `target`; return the push's CompletedProcess."""
    pulled = cli("pull", source)
    assert pulled.returncode == 0, pulled.stderr
    tagged = cli("tag", source, target)
    assert tagged.returncode == 0, tagged.stderr
    pushed = cli("push", target)
    assert pushed.returncode == 0, pushed.stderr
    return pushed


def test_docker_image_repush_keeps_digest(cli, busybox_rootfs_tar, registry, dockerd, docker_images):
    source = f"{registry.host}/keep/docker-source:1"
    target = f"{registry.host}/keep/docker-copy:1"
    docker_digest = push_with_docker(dockerd, docker_images, busybox_rootfs_tar, source)
    original = stored_manifest(registry, "keep/docker-source", "1")

    pushed = pull_tag_push(cli, source, target)

    copy = stored_manifest(registry, "keep/docker-copy", "1")
    assert original.media_type == DOCKER_MANIFEST
    assert original.digest == docker_digest
    assert pushed_digest(pushed.stdout) == docker_digest
    assert copy.digest == docker_digest
    assert copy.media_type == DOCKER_MANIFEST
    assert copy.data == original.data
    assert "Mounted from keep/docker-source" in pushed.stdout


def test_docker_image_push_to_own_tag(cli, busybox_rootfs_tar, registry, dockerd, docker_images):
    name = f"{registry.host}/keep/docker-same:1"
    docker_digest = push_with_docker(dockerd, docker_images, busybox_rootfs_tar, name)
    assert cli("pull", name).returncode == 0

    pushed = cli("push", name)

    assert pushed.returncode == 0, pushed.stderr
    assert pushed_digest(pushed.stdout) == docker_digest
    assert stored_manifest(registry, "keep/docker-same", "1").digest == docker_digest
    assert "Layer already exists" in pushed.stdout


def test_podman_image_repush_keeps_digest(cli, busybox_rootfs_tar, registry, podman, tmp_path):
    source = f"{registry.host}/keep/podman-source:1"
    target = f"{registry.host}/keep/podman-copy:1"
    podman_digest = push_with_podman(podman, busybox_rootfs_tar, source, tmp_path / "digest")
    original = stored_manifest(registry, "keep/podman-source", "1")

    pushed = pull_tag_push(cli, source, target)

    copy = stored_manifest(registry, "keep/podman-copy", "1")
    assert original.media_type == OCI_MANIFEST
    assert original.digest == podman_digest
    assert pushed_digest(pushed.stdout) == podman_digest
    assert copy.digest == podman_digest
    assert copy.media_type == OCI_MANIFEST
    assert copy.data == original.data


def test_repush_to_other_registry_falls_back(cli, busybox_rootfs_tar, registry, other_registry, dockerd,
                                             docker_images, tmp_path):
    source = f"{registry.host}/keep/docker-away:1"
    target = f"{other_registry.host}/keep/docker-away:1"
    docker_digest = push_with_docker(dockerd, docker_images, busybox_rootfs_tar, source)
    docker_layers = stored_manifest(registry, "keep/docker-away", "1").document["layers"]

    pushed = pull_tag_push(cli, source, target)
    image_id = json.loads(cli("inspect", source).stdout)[0]["Id"]
    away = stored_manifest(other_registry, "keep/docker-away", "1")
    other = Engine(str(tmp_path / "other"))
    pulled_back = pull(other, target)

    assert pushed_digest(pushed.stdout) == away.digest
    assert away.digest != docker_digest
    assert away.media_type == OCI_MANIFEST
    assert away.document["config"]["digest"] == image_id
    assert [layer["mediaType"] for layer in away.document["layers"]] == [OCI_LAYER_GZIP]
    assert [layer["digest"] for layer in away.document["layers"]] != [layer["digest"] for layer in docker_layers]
    assert pulled_back.image.id == image_id


def delete_blob(server, repository, digest):
    request = urllib.request.Request(f"http://{server.host}/v2/{repository}/blobs/{digest}", method="DELETE")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202


def test_repush_without_source_blob_falls_back(cli, busybox_rootfs_tar, registry, dockerd, docker_images, tmp_path):
    source = f"{registry.host}/keep/docker-gone:1"
    target = f"{registry.host}/keep/docker-gone-copy:1"
    docker_digest = push_with_docker(dockerd, docker_images, busybox_rootfs_tar, source)
    docker_layers = stored_manifest(registry, "keep/docker-gone", "1").document["layers"]
    assert cli("pull", source).returncode == 0
    # The source repository no longer links the layer, so the registry cannot mount it from there.
    delete_blob(registry, "keep/docker-gone", docker_layers[0]["digest"])

    pushed = pull_tag_push(cli, source, target)

    copy = stored_manifest(registry, "keep/docker-gone-copy", "1")
    other = Engine(str(tmp_path / "other"))
    assert pushed_digest(pushed.stdout) == copy.digest
    assert copy.digest != docker_digest
    assert copy.media_type == OCI_MANIFEST
    assert [layer["digest"] for layer in copy.document["layers"]] != [layer["digest"] for layer in docker_layers]
    assert "Pushed" in pushed.stdout
    assert pull(other, target).image.id == json.loads(cli("inspect", source).stdout)[0]["Id"]


def test_changed_image_gets_new_manifest(cli, busybox_rootfs_tar, registry, dockerd, docker_images, tmp_path):
    source = f"{registry.host}/keep/docker-base:1"
    target = f"{registry.host}/keep/docker-changed:1"
    docker_digest = push_with_docker(dockerd, docker_images, busybox_rootfs_tar, source)
    docker_layers = stored_manifest(registry, "keep/docker-base", "1").document["layers"]
    assert cli("pull", source).returncode == 0
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {source}\nLABEL changed=yes\n")
    built = cli("build", "--network", "none", "-t", target, context)
    assert built.returncode == 0, built.stderr

    pushed = cli("push", target)

    changed = stored_manifest(registry, "keep/docker-changed", "1")
    assert pushed.returncode == 0, pushed.stderr
    assert pushed_digest(pushed.stdout) == changed.digest
    assert changed.digest != docker_digest
    assert changed.media_type == OCI_MANIFEST
    assert changed.document["config"]["digest"] == json.loads(cli("inspect", target).stdout)[0]["Id"]
    # The unchanged layer is still the blob that Docker pushed, named by its OCI media type.
    assert [layer["digest"] for layer in changed.document["layers"]] == [layer["digest"] for layer in docker_layers]
    assert [layer["mediaType"] for layer in changed.document["layers"]] == [OCI_LAYER_GZIP]


# The store's side: the kept manifest blob lives as long as a name of its image.


def kept_blobs(engine):
    return {digest for descriptor in engine.store.descriptors() for digest in registry_manifest_blobs(descriptor)}


@pytest.fixture
def pushed_source(busybox_rootfs_tar, registry, tmp_path, request):
    """An image pushed by another store as keep/store-side:TEST; return its name, stored manifest and digest."""
    source_engine = Engine(str(tmp_path / "source"))
    import_busybox(source_engine, busybox_rootfs_tar, label=request.node.name)
    # A parametrized test's name has brackets, which a tag cannot contain.
    tag = re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name)[:100]
    name = f"{registry.host}/keep/store-side:{tag}"
    source_engine.tag("busybox", name)
    digest = push(source_engine, name).manifest_digest
    return name, stored_manifest(registry, "keep/store-side", tag), digest


def test_pull_keeps_manifest_blob(engine, pushed_source, cli):
    name, stored, digest = pushed_source

    pull(engine, name)

    assert stored.digest == digest
    assert kept_blobs(engine) == {digest}
    assert engine.store.read_blob(digest) == stored.data
    assert cli("fsck").stdout == "store is consistent\n"


def test_rmi_and_prune_drop_manifest_blob(engine, pushed_source, registry, cli):
    name, _, digest = pushed_source
    copy = f"{registry.host}/keep/store-copy:1"
    pull(engine, name)
    assert cli("tag", name, copy).returncode == 0

    assert cli("rmi", name).returncode == 0
    assert cli("system", "prune", "-f").returncode == 0
    kept_while_copy_named = engine.store.has_blob(digest)
    assert cli("rmi", copy).returncode == 0
    assert cli("system", "prune", "-f").returncode == 0

    assert kept_while_copy_named
    assert not engine.store.has_blob(digest)
    assert kept_blobs(engine) == set()
    assert cli("fsck").stdout == "store is consistent\n"


def test_fsck_repairs_lost_manifest_blob(engine, pushed_source, registry, cli):
    name, _, digest = pushed_source
    target = f"{registry.host}/keep/store-lost:1"
    pull(engine, name)
    engine.tag(name, target)
    os.unlink(engine.store.blob_path(digest))

    check = cli("fsck")
    repair = cli("fsck", "--repair")
    after = cli("fsck")
    pushed = push(engine, target)

    assert f"registry manifest {digest} kept for push is missing" in check.stdout
    assert repair.returncode == 0, repair.stderr
    assert after.stdout == "store is consistent\n"
    assert kept_blobs(engine) == set()
    assert engine.image(name).id == engine.image(target).id
    # Without a kept manifest the push writes layerlab's own, which for a source that layerlab pushed is the same.
    assert pushed.manifest_digest == digest


def test_own_manifest_other_registry_same_digest(engine, pushed_source, other_registry):
    name, _, digest = pushed_source
    target = f"{other_registry.host}/keep/layerlab-copy:1"
    pull(engine, name)
    engine.tag(name, target)

    pushed = push(engine, target)

    copy = stored_manifest(other_registry, "keep/layerlab-copy", "1")
    # The other registry has none of the layer blobs, so the push writes its own manifest, with the source's bytes.
    assert pushed.manifest_digest == digest
    assert copy.digest == digest


def change_same_length(data):
    return data.replace(b"   ", b"\t  ", 1)


def change_length(data):
    return data + b"\n"


@pytest.mark.parametrize("change", [change_same_length, change_length])
def test_changed_manifest_blob_not_sent(engine, pushed_source, registry, tmp_path, caplog, change):
    name, stored, digest = pushed_source
    repository = f"keep/store-changed-{change.__name__.replace('_', '-')}"
    target = f"{registry.host}/{repository}:1"
    pull(engine, name)
    engine.tag(name, target)
    path = engine.store.blob_path(digest)
    changed = change(stored.data)
    assert changed != stored.data
    os.chmod(path, 0o644)
    with open(path, "wb") as blob:
        blob.write(changed)

    pushed = push(engine, target)

    copy = stored_manifest(registry, repository, "1")
    # The fallback manifest that layerlab writes for its own image has the kept manifest's bytes.
    assert pushed.manifest_digest == digest
    assert copy.digest == digest
    assert copy.data == stored.data
    assert pull(Engine(str(tmp_path / "fresh")), target).image.id == engine.image(target).id
    assert f"its blob has digest sha256:{hashlib.sha256(changed).hexdigest()}" in caplog.text


MALFORMED_ENTRIES = ["garbage", "@@@", "HOST/repo@sha256:zz"]


def add_kept_entries(engine, name, entries):
    def change(descriptors):
        for descriptor in descriptors:
            if descriptor.annotations.get("org.opencontainers.image.ref.name") == name:
                kept = descriptor.annotations["dev.layerlab.registry.manifests"].split(",")
                descriptor.annotations["dev.layerlab.registry.manifests"] = ",".join(kept + entries)

    engine.store.update_index(change)


def test_malformed_kept_entries_fsck(engine, pushed_source, registry, cli):
    name, _, digest = pushed_source
    copy = f"{registry.host}/keep/store-malformed-copy:1"
    pull(engine, name)
    add_kept_entries(engine, name, MALFORMED_ENTRIES)
    assert cli("tag", name, copy).returncode == 0

    check = cli("fsck")
    repair = cli("fsck", "--repair")
    after = cli("fsck")

    for entry in MALFORMED_ENTRIES:
        assert (f"image {name}: invalid kept registry manifest entry {entry!r} "
                f"in annotation dev.layerlab.registry.manifests") in check.stdout
    assert "invalid digest" not in check.stdout + check.stderr
    assert repair.returncode == 0, repair.stderr
    assert after.stdout == "store is consistent\n"
    assert kept_blobs(engine) == {digest}
    for descriptor in engine.store.descriptors():
        for entry in MALFORMED_ENTRIES:
            assert entry not in descriptor.annotations.get("dev.layerlab.registry.manifests", "").split(",")


def test_push_skips_malformed_kept_entries(engine, pushed_source, registry, caplog):
    name, _, digest = pushed_source
    target = f"{registry.host}/keep/store-malformed-push:1"
    pull(engine, name)
    add_kept_entries(engine, name, MALFORMED_ENTRIES)
    engine.tag(name, target)

    pushed = push(engine, target)

    assert pushed.manifest_digest == digest
    assert stored_manifest(registry, "keep/store-malformed-push", "1").digest == digest
    for entry in MALFORMED_ENTRIES:
        assert f"ignoring the invalid kept registry manifest entry {entry!r}" in caplog.text
