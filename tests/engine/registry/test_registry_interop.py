"""Images moved through a real docker-registry between layerlab, Docker Engine and podman.

Every direction checks the manifest digest and the image ID (the config
digest) that each side reports against the bytes that the registry
serves, then runs the image on the side that pulled it.
"""

import json
import re

import pytest

from tests.engine.registry.conftest import import_busybox, stored_manifest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

# The closing line of `docker push` and `layerlab push`, such as "1: digest: sha256:... size: 527".
PUSHED_DIGEST = re.compile(r"^\S+: digest: (sha256:[0-9a-f]{64}) size: \d+$", re.MULTILINE)


def pushed_digest(output):
    found = PUSHED_DIGEST.findall(output)
    assert len(found) == 1, f"expected one 'digest: sha256:...' line in the push output:\n{output}"
    return found[0]


@pytest.fixture
def docker_images(dockerd):
    """Names to remove from the session's dockerd when the test ends."""
    names = []
    yield names
    for name in names:
        dockerd.docker("rmi", "--force", name, check=False)


def push_from_layerlab(cli, engine, busybox_rootfs_tar, name, label):
    """Store busybox with `label` (for an image ID of its own), push it as `name`, return the image and digest."""
    image = import_busybox(engine, busybox_rootfs_tar, name=name, label=label)
    pushed = cli("push", name)
    assert pushed.returncode == 0, pushed.stderr
    return image, pushed_digest(pushed.stdout)


def layerlab_inspect(cli, name):
    result = cli("inspect", name)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]


# Docker Engine


def test_docker_pulls_layerlab_push(cli, engine, busybox_rootfs_tar, registry, dockerd, docker_images):
    name = f"{registry.host}/lab/to-docker:1"
    docker_images.append(name)
    image, digest = push_from_layerlab(cli, engine, busybox_rootfs_tar, name, "to-docker")
    stored = stored_manifest(registry, "lab/to-docker", "1")

    pulled = dockerd.docker("pull", name)
    docker_image = json.loads(dockerd.docker("image", "inspect", name).stdout)[0]
    ran = dockerd.docker("run", "--rm", "--network", "none", name, "echo", "layerlab image in docker", check=False)

    assert stored.digest == digest
    assert stored.document["config"]["digest"] == image.id
    assert f"Digest: {digest}" in pulled.stdout
    assert docker_image["Id"] == image.id
    assert docker_image["RepoDigests"] == [f"{registry.host}/lab/to-docker@{digest}"]
    assert ran.stdout == "layerlab image in docker\n", ran.stderr


def test_layerlab_pulls_docker_push(cli, store_root, busybox_rootfs_tar, registry, dockerd, docker_images):
    name = f"{registry.host}/lab/from-docker:1"
    docker_images.append(name)
    docker_id = dockerd.import_rootfs(busybox_rootfs_tar, name)
    digest = pushed_digest(dockerd.docker("push", name).stdout)
    docker_image = json.loads(dockerd.docker("image", "inspect", name).stdout)[0]
    stored = stored_manifest(registry, "lab/from-docker", "1")

    pulled = cli("pull", name)
    document = layerlab_inspect(cli, name)
    ran = cli("run", "--rm", "--network", "none", name, "echo", "docker image in layerlab")
    pinned = cli("run", "--rm", "--network", "none", f"{registry.host}/lab/from-docker@{digest}", "echo", "pinned")

    assert stored.media_type == DOCKER_MANIFEST
    assert stored.digest == digest
    assert docker_image["RepoDigests"] == [f"{registry.host}/lab/from-docker@{digest}"]
    assert pulled.returncode == 0, pulled.stderr
    assert f"Digest: {digest}" in pulled.stdout
    assert document["Id"] == docker_id
    assert document["RepoDigests"] == [f"{registry.host}/lab/from-docker@{digest}"]
    assert ran.stdout == "docker image in layerlab\n", ran.stderr
    assert pinned.stdout == "pinned\n", pinned.stderr


# podman


def test_podman_pulls_layerlab_push(cli, engine, busybox_rootfs_tar, registry, podman):
    name = f"{registry.host}/lab/to-podman:1"
    image, digest = push_from_layerlab(cli, engine, busybox_rootfs_tar, name, "to-podman")

    podman.podman("pull", "--tls-verify=false", name)
    podman_image = podman.inspect_image(name)
    ran = podman.run(name, "echo", "layerlab image in podman")

    assert podman_image["Id"] == image.id.removeprefix("sha256:")
    assert podman_image["Digest"] == digest
    assert podman_image["RepoDigests"] == [f"{registry.host}/lab/to-podman@{digest}"]
    assert ran.stdout == "layerlab image in podman\n", ran.stderr


# podman keeps the source's manifest type unless --format names one, and
# `podman import` stores an OCI image, so the default push is OCI too.
@pytest.mark.parametrize(("format", "media_type"), [
    (None, OCI_MANIFEST),
    ("oci", OCI_MANIFEST),
    ("v2s2", DOCKER_MANIFEST),
])
def test_layerlab_pulls_podman_push(cli, busybox_rootfs_tar, registry, podman, tmp_path, format, media_type):
    tag = format or "default"
    name = f"{registry.host}/lab/from-podman:{tag}"
    podman_id = podman.import_rootfs(busybox_rootfs_tar, name)
    digest_file = tmp_path / "pushed-digest"
    format_flags = ["--format", format] if format else []
    podman.podman("push", "--tls-verify=false", "--digestfile", digest_file, *format_flags, name)
    digest = digest_file.read_text().strip()
    stored = stored_manifest(registry, "lab/from-podman", tag)

    pulled = cli("pull", name)
    document = layerlab_inspect(cli, name)
    ran = cli("run", "--rm", "--network", "none", name, "echo", "podman image in layerlab")

    assert stored.media_type == media_type
    assert stored.digest == digest
    assert stored.document["config"]["digest"] == podman_id
    assert pulled.returncode == 0, pulled.stderr
    assert f"Digest: {digest}" in pulled.stdout
    assert document["Id"] == podman_id
    assert document["RepoDigests"] == [f"{registry.host}/lab/from-podman@{digest}"]
    assert ran.stdout == "podman image in layerlab\n", ran.stderr



def test_podman_pushes_on_layerlab_copy(cli, busybox_rootfs_tar, registry, dockerd, docker_images, podman, tmp_path):
    # A pulled image changed by a build gets an OCI manifest of layerlab's own, and its
    # unchanged layer is still the gzip blob that Docker pushed, under the OCI media type.
    source = f"{registry.host}/lab/docker-source:1"
    copy = f"{registry.host}/lab/layerlab-copy:1"
    onward = f"{registry.host}/lab/podman-onward:1"
    docker_images.append(source)
    dockerd.import_rootfs(busybox_rootfs_tar, source)
    dockerd.docker("push", source)
    docker_layers = stored_manifest(registry, "lab/docker-source", "1").document["layers"]
    assert cli("pull", source).returncode == 0
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {source}\nLABEL copied=yes\n")
    assert cli("build", "--network", "none", "-t", copy, context).returncode == 0
    copy_id = layerlab_inspect(cli, copy)["Id"]
    pushed = cli("push", copy)
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed_digest(pushed.stdout)
    copy_layers = stored_manifest(registry, "lab/layerlab-copy", "1").document["layers"]

    podman.podman("pull", "--tls-verify=false", copy)
    podman_image = podman.inspect_image(copy)
    digest_file = tmp_path / "onward-digest"
    onward_push = podman.podman("push", "--tls-verify=false", "--digestfile", digest_file, copy, onward, check=False)

    assert [layer["digest"] for layer in copy_layers] == [layer["digest"] for layer in docker_layers]
    assert {layer["mediaType"] for layer in copy_layers} == {"application/vnd.oci.image.layer.v1.tar+gzip"}
    assert podman_image["Digest"] == digest
    assert podman_image["Id"] == copy_id.removeprefix("sha256:")
    assert onward_push.returncode == 0, onward_push.stderr
    assert stored_manifest(registry, "lab/podman-onward", "1").digest == digest_file.read_text().strip()


# Images of several layers, with deletions, hard links and instructions that add no layer.

LAYERED_DOCKERFILE = """\
FROM {base}
RUN rm /bin/vi && mkdir /d && echo one > /d/f && ln -s /d/f /link
ENV X=set
RUN rm -r /d && mkdir /d && echo two > /d/g && ln /d/g /d/h
WORKDIR /tmp
"""
LAYERED_CHECK = ["sh", "-c", "ls /d; test -e /bin/vi || echo no vi; readlink /link; cat /d/h; echo $X; pwd"]
LAYERED_OUTPUT = "g\nh\nno vi\n/d/f\ntwo\nset\n/tmp\n"


def test_docker_and_podman_run_layerlab_build(cli, busybox, registry, dockerd, docker_images, podman, tmp_path):
    name = f"{registry.host}/lab/layerlab-built:1"
    docker_images.append(name)
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(LAYERED_DOCKERFILE.format(base="busybox"))
    built = cli("build", "--network", "none", "-t", name, context)
    assert built.returncode == 0, built.stderr
    pushed = cli("push", name)
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed_digest(pushed.stdout)
    image_id = layerlab_inspect(cli, name)["Id"]

    docker_ran = dockerd.docker("run", "--rm", "--network", "none", name, *LAYERED_CHECK, check=False)
    docker_image = json.loads(dockerd.docker("image", "inspect", name).stdout)[0]
    podman.podman("pull", "--tls-verify=false", name)
    podman_image = podman.inspect_image(name)
    podman_ran = podman.run(name, *LAYERED_CHECK)

    assert len(stored_manifest(registry, "lab/layerlab-built", "1").document["layers"]) == 3
    assert docker_image["Id"] == image_id
    assert docker_image["RepoDigests"] == [f"{registry.host}/lab/layerlab-built@{digest}"]
    assert docker_ran.stdout == LAYERED_OUTPUT, docker_ran.stderr
    assert podman_image["Id"] == image_id.removeprefix("sha256:")
    assert podman_image["Digest"] == digest
    assert podman_ran.stdout == LAYERED_OUTPUT, podman_ran.stderr


def test_layerlab_runs_docker_build(cli, busybox_rootfs_tar, registry, dockerd, docker_images, tmp_path):
    base = f"{registry.host}/lab/docker-base:1"
    name = f"{registry.host}/lab/docker-built:1"
    docker_images.extend([base, name])
    dockerd.import_rootfs(busybox_rootfs_tar, base)
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(LAYERED_DOCKERFILE.format(base=base))
    dockerd.docker("build", "--network", "none", "-t", name, context)
    docker_id = json.loads(dockerd.docker("image", "inspect", name).stdout)[0]["Id"]
    digest = pushed_digest(dockerd.docker("push", name).stdout)

    pulled = cli("pull", name)
    document = layerlab_inspect(cli, name)
    ran = cli("run", "--rm", "--network", "none", name, *LAYERED_CHECK)

    assert len(stored_manifest(registry, "lab/docker-built", "1").document["layers"]) == 3
    assert pulled.returncode == 0, pulled.stderr
    assert f"Digest: {digest}" in pulled.stdout
    assert document["Id"] == docker_id
    assert ran.stdout == LAYERED_OUTPUT, ran.stderr


# A pull of a Docker manifest list or an OCI index records the list's digest.


def test_docker_manifest_list_pulls_alike(cli, busybox_rootfs_tar, registry, dockerd, docker_images):
    member = f"{registry.host}/lab/list-member:1"
    name = f"{registry.host}/lab/docker-list:1"
    docker_images.extend([member, name])
    docker_id = dockerd.import_rootfs(busybox_rootfs_tar, member)
    dockerd.docker("push", member)
    dockerd.docker("manifest", "create", "--insecure", name, member)
    dockerd.docker("manifest", "push", "--insecure", name)
    stored = stored_manifest(registry, "lab/docker-list", "1")

    docker_pulled = dockerd.docker("pull", name)
    docker_image = json.loads(dockerd.docker("image", "inspect", name).stdout)[0]
    pulled = cli("pull", name)
    document = layerlab_inspect(cli, name)

    assert stored.media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert f"Digest: {stored.digest}" in docker_pulled.stdout
    assert f"{registry.host}/lab/docker-list@{stored.digest}" in docker_image["RepoDigests"]
    assert pulled.returncode == 0, pulled.stderr
    assert f"Digest: {stored.digest}" in pulled.stdout
    assert document["Id"] == docker_id
    assert document["RepoDigests"] == [f"{registry.host}/lab/docker-list@{stored.digest}"]


def test_podman_index_pulls_alike(cli, busybox_rootfs_tar, registry, podman, tmp_path):
    member = f"{registry.host}/lab/index-member:1"
    name = f"{registry.host}/lab/podman-index:1"
    podman_id = podman.import_rootfs(busybox_rootfs_tar, member)
    podman.podman("push", "--tls-verify=false", member)
    podman.podman("manifest", "create", name)
    podman.podman("manifest", "add", "--tls-verify=false", name, f"docker://{member}")
    digest_file = tmp_path / "index-digest"
    podman.podman("manifest", "push", "--tls-verify=false", "--all", "--digestfile", digest_file,
                  name, f"docker://{name}")
    stored = stored_manifest(registry, "lab/podman-index", "1")

    pulled = cli("pull", name)
    document = layerlab_inspect(cli, name)
    ran = cli("run", "--rm", "--network", "none", name, "echo", "from an index")

    assert stored.media_type == "application/vnd.oci.image.index.v1+json"
    assert stored.digest == digest_file.read_text().strip()
    assert pulled.returncode == 0, pulled.stderr
    assert f"Digest: {stored.digest}" in pulled.stdout
    assert document["Id"] == podman_id
    assert document["RepoDigests"] == [f"{registry.host}/lab/podman-index@{stored.digest}"]
    assert ran.stdout == "from an index\n", ran.stderr
