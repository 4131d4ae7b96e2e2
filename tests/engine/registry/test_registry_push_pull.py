"""Push to and pull from a real docker-registry, checked with skopeo."""

import json
import subprocess
import urllib.request

import pytest

from layerlab.engine.api import Engine
from layerlab.engine.errors import NotFoundError
from layerlab.engine.image import ImageDraft, write_image
from layerlab.engine.reference import Reference
from layerlab.engine.registry.client import RegistryClient
from layerlab.engine.registry.manifests import DOCKER_MANIFEST, OCI_MANIFEST
from layerlab.engine.registry.pull import pull
from layerlab.engine.registry.push import OCI_LAYER_GZIP, push
from tests.engine.registry.conftest import import_busybox, skopeo, stored_manifest


def raw_manifest(host, repository, tag):
    result = subprocess.run(
        [skopeo(), "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{repository}:{tag}"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    return json.loads(result.stdout)


def test_push_config_digest_matches_skopeo(engine, busybox, registry):
    name = f"{registry.host}/lab/busybox:1"
    engine.tag("busybox", name)

    result = push(engine, name)

    manifest = raw_manifest(registry.host, "lab/busybox", "1")
    assert manifest["config"]["digest"] == busybox.id
    assert manifest["layers"][0]["mediaType"].endswith("tar+gzip")
    assert result.manifest_digest.startswith("sha256:")


def test_pull_back_and_run(cli, busybox_rootfs_tar, registry, store_root, docker_config):
    engine = Engine(str(store_root))
    image = import_busybox(engine, busybox_rootfs_tar, label="pull-back")
    name = f"{registry.host}/lab/pullback:1"
    engine.tag(image.id, name)
    assert cli("push", name).returncode == 0
    assert cli("rmi", name).returncode == 0
    assert cli("rmi", "busybox").returncode == 0

    pulled = cli("pull", name)
    ran = cli("run", "--rm", name, "echo", "pulled")

    assert pulled.returncode == 0, pulled.stderr
    assert f"Status: Downloaded newer image for {name}" in pulled.stdout
    assert Engine(str(store_root)).image(name).id == image.id
    assert ran.stdout == "pulled\n", ran.stderr


def test_run_pulls_missing_image(cli, busybox_rootfs_tar, registry, tmp_path, docker_config):
    source = Engine(str(tmp_path / "source"))
    import_busybox(source, busybox_rootfs_tar, label="auto-pull")
    name = f"{registry.host}/lab/autopull:1"
    source.tag("busybox", name)
    push(source, name)

    ran = cli("run", "--rm", name, "echo", "auto")

    assert ran.stdout == "auto\n", ran.stderr
    assert "Unable to find image" in ran.stderr


def test_second_push_skips_layers(engine, busybox, registry):
    name = f"{registry.host}/lab/twice:1"
    engine.tag("busybox", name)
    push(engine, name)
    lines = []

    push(engine, name, progress=lines.append)

    assert any("Layer already exists" in line for line in lines), lines


def test_push_mounts_from_sibling_repository(engine, busybox, registry):
    first = f"{registry.host}/lab/mount-a:1"
    second = f"{registry.host}/lab/mount-b:1"
    engine.tag("busybox", first)
    engine.tag("busybox", second)
    push(engine, first)
    lines = []

    push(engine, second, progress=lines.append)

    assert any("Mounted from lab/mount-a" in line for line in lines), lines


def test_chunked_push_pulls_identically(engine, busybox, registry, tmp_path):
    name = f"{registry.host}/lab/chunked:1"
    engine.tag("busybox", name)
    lines = []

    push(engine, name, chunk_size=64 * 1024, progress=lines.append)
    other = Engine(str(tmp_path / "other"))
    result = pull(other, name)

    assert any(line.endswith(": Pushed\n") for line in lines), lines
    assert result.image.id == busybox.id
    assert other.image(name).diff_ids == busybox.diff_ids


def test_pull_by_digest(engine, busybox, registry, tmp_path):
    name = f"{registry.host}/lab/bydigest:1"
    engine.tag("busybox", name)
    digest = push(engine, name).manifest_digest
    other = Engine(str(tmp_path / "other"))

    result = pull(other, f"{registry.host}/lab/bydigest@{digest}")

    assert result.image.id == busybox.id
    assert result.manifest_digest == digest


def test_skopeo_push_then_layerlab_pull(engine, busybox, registry, tmp_path):
    # The store is an OCI image layout, so skopeo reads it directly.
    target = f"{registry.host}/lab/from-skopeo:1"
    subprocess.run(
        [skopeo(), "copy", "--dest-tls-verify=false", "--dest-compress",
         f"oci:{engine.root}:docker.io/library/busybox:latest", f"docker://{target}"],
        capture_output=True, text=True, check=True, timeout=120,
    )
    other = Engine(str(tmp_path / "other"))

    result = pull(other, target)

    assert result.image.id == busybox.id
    assert other.image(target).diff_ids == busybox.diff_ids


def put_manifest(registry, repository, tag, document, media_type):
    """PUT `document` as the manifest `repository:tag`, bypassing layerlab's push."""
    client = RegistryClient(registry.host)
    client.add_scope(repository, "pull,push")
    client.request("PUT", f"/v2/{repository}/manifests/{tag}", body=json.dumps(document).encode(), expect=(201,),
                   headers={"Content-Type": media_type}).read()
    client.close()


def test_push_names_docker_layers_by_oci_type(engine, busybox, registry, tmp_path):
    # The same layer blobs under a Docker schema 2 manifest, as `docker push` makes it.
    oci_name = f"{registry.host}/lab/docker-made:oci"
    engine.tag("busybox", oci_name)
    push(engine, oci_name)
    oci_manifest = stored_manifest(registry, "lab/docker-made", "oci").document
    docker_manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {**oci_manifest["config"], "mediaType": "application/vnd.docker.container.image.v1+json"},
        "layers": [{**layer, "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip"}
                   for layer in oci_manifest["layers"]],
    }
    put_manifest(registry, "lab/docker-made", "1", docker_manifest, DOCKER_MANIFEST)
    other = Engine(str(tmp_path / "other"))
    pulled = pull(other, f"{registry.host}/lab/docker-made:1").image
    # A changed config rules out the kept Docker manifest, so the push writes an OCI one.
    draft = ImageDraft.from_image(pulled)
    draft.settings["Labels"] = {"changed": "yes"}
    copy = f"{registry.host}/lab/docker-copy:1"
    other.images.tag(write_image(other.store, draft), Reference.parse(copy))
    lines = []

    push(other, copy, progress=lines.append)

    pushed = stored_manifest(registry, "lab/docker-copy", "1")
    assert any("Mounted from lab/docker-made" in line for line in lines), lines
    assert pushed.media_type == OCI_MANIFEST
    assert [layer["mediaType"] for layer in pushed.document["layers"]] == [OCI_LAYER_GZIP]
    assert [layer["digest"] for layer in pushed.document["layers"]] == [
        layer["digest"] for layer in docker_manifest["layers"]
    ]


def put_index(registry, repository, tag, platforms):
    """Store an OCI index whose entries all point at `repository:tag`'s manifest, one per platform."""
    client = RegistryClient(registry.host)
    client.add_scope(repository, "pull,push")
    response = client.request("GET", f"/v2/{repository}/manifests/{tag}",
                              headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    data = response.read()
    digest = response.getheader("Docker-Content-Digest")
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": len(data),
             "platform": {"os": os_name, "architecture": arch}}
            for os_name, arch in platforms
        ],
    }
    body = json.dumps(index).encode()
    client.request("PUT", f"/v2/{repository}/manifests/multi", body=body, expect=(201,),
                   headers={"Content-Type": "application/vnd.oci.image.index.v1+json"}).read()
    client.close()


def test_pull_index_selects_platform(engine, busybox, registry, tmp_path):
    from layerlab.engine.image import host_architecture

    name = f"{registry.host}/lab/multi:1"
    engine.tag("busybox", name)
    push(engine, name)
    put_index(registry, "lab/multi", "1", [("linux", "s390x"), ("linux", host_architecture())])
    other = Engine(str(tmp_path / "other"))

    result = pull(other, f"{registry.host}/lab/multi:multi")

    assert result.image.id == busybox.id
    with pytest.raises(NotFoundError, match="no image for platform linux/riscv64"):
        pull(other, f"{registry.host}/lab/multi:multi", platform="linux/riscv64")


def test_search_lists_catalog(cli, engine, busybox, registry):
    engine.tag("busybox", f"{registry.host}/lab/findme:1")
    push(engine, f"{registry.host}/lab/findme:1")

    result = cli("search", f"{registry.host}/findme")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL", "AUTOMATED"]
    assert lines[1].split()[0] == f"{registry.host}/lab/findme"


def test_registry_answers_only_on_loopback(registry):
    with urllib.request.urlopen(f"http://{registry.host}/v2/", timeout=10) as response:
        assert response.status == 200


def test_pull_records_repo_digest(cli, busybox_rootfs_tar, registry, store_root, docker_config):
    engine = Engine(str(store_root))
    image = import_busybox(engine, busybox_rootfs_tar, label="repo-digest")
    name = f"{registry.host}/lab/digests:1"
    engine.tag(image.id, name)
    pushed = push(engine, name)
    assert cli("rmi", name).returncode == 0
    assert cli("rmi", "busybox").returncode == 0

    pulled = cli("pull", name)
    document = json.loads(cli("inspect", name).stdout)[0]
    listing = cli("images", "--digests").stdout.splitlines()
    by_digest = cli("run", "--rm", f"{registry.host}/lab/digests@{pushed.manifest_digest}", "echo", "pinned")

    assert pulled.returncode == 0, pulled.stderr
    assert document["RepoDigests"] == [f"{registry.host}/lab/digests@{pushed.manifest_digest}"]
    assert listing[0].split()[:3] == ["REPOSITORY", "TAG", "DIGEST"]
    assert listing[1].split()[:3] == [f"{registry.host}/lab/digests", "1", pushed.manifest_digest]
    assert by_digest.stdout == "pinned\n", by_digest.stderr
