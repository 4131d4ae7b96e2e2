"""zstd layers made by skopeo: pulled from a real docker-registry and loaded from an OCI archive."""

import hashlib
import json
import subprocess
import tarfile

import pytest

from layerlab.engine.api import Engine
from layerlab.engine.registry.pull import pull
from layerlab.engine.registry.push import push
from layerlab.engine.transfer.archives import load
from tests.engine.registry.conftest import import_busybox, skopeo

OCI_ZSTD_LAYER = "application/vnd.oci.image.layer.v1.tar+zstd"


def skopeo_copy(source, destination):
    """Copy an image with skopeo, compressing its layers with zstd."""
    result = subprocess.run(
        [skopeo(), "copy", "--dest-tls-verify=false", "--dest-compress-format", "zstd", source, destination],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert result.returncode == 0, result.stderr


def raw_manifest(host, repository, tag):
    result = subprocess.run(
        [skopeo(), "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{repository}:{tag}"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    return json.loads(result.stdout)


def file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as blob:
        while chunk := blob.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


@pytest.fixture
def source(tmp_path, busybox_rootfs_tar):
    """A second store holding busybox, for skopeo to copy from while `cli` works on `store_root`."""
    engine = Engine(str(tmp_path / "source"))
    image = import_busybox(engine, busybox_rootfs_tar, label="zstd")
    return engine, image


def test_skopeo_zstd_pull_and_run(cli, source, registry, store_root):
    engine, image = source
    name = f"{registry.host}/lab/zstd:1"
    skopeo_copy(f"oci:{engine.root}:docker.io/library/busybox:latest", f"docker://{name}")
    manifest = raw_manifest(registry.host, "lab/zstd", "1")

    pulled = cli("pull", name)
    ran = cli("run", "--rm", "--network", "none", name, "echo", "from zstd")

    assert [layer["mediaType"] for layer in manifest["layers"]] == [OCI_ZSTD_LAYER]
    assert manifest["config"]["digest"] == image.id
    assert pulled.returncode == 0, pulled.stderr
    assert "Traceback" not in pulled.stderr
    puller = Engine(str(store_root))
    stored = puller.image(name)
    assert stored.id == image.id
    assert stored.diff_ids == image.diff_ids
    for diff_id in stored.diff_ids:
        assert file_digest(puller.store.blob_path(diff_id)) == diff_id
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "from zstd\n"


def test_push_after_zstd_pull_reuses_blob(source, registry, tmp_path):
    engine, image = source
    name = f"{registry.host}/lab/zstd-again:1"
    skopeo_copy(f"oci:{engine.root}:docker.io/library/busybox:latest", f"docker://{name}")
    before = raw_manifest(registry.host, "lab/zstd-again", "1")
    other = Engine(str(tmp_path / "other"))
    pull(other, name)
    lines = []

    push(other, name, progress=lines.append)
    after = raw_manifest(registry.host, "lab/zstd-again", "1")

    assert any("Layer already exists" in line for line in lines), lines
    assert after["layers"] == before["layers"]
    assert after["config"]["digest"] == image.id


def archive_manifest(path):
    """Return the first image manifest of an oci-archive, read straight from the tar."""
    with tarfile.open(path) as archive:
        index = json.load(archive.extractfile("index.json"))
        digest = index["manifests"][0]["digest"]
        return json.load(archive.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}"))


def test_load_zstd_oci_archive(source, tmp_path):
    engine, image = source
    path = tmp_path / "zstd-oci.tar"
    # skopeo 1.9.3 compresses uncompressed layers for an OCI destination, with the given format.
    skopeo_copy(f"oci:{engine.root}:docker.io/library/busybox:latest",
                f"oci-archive:{path}:docker.io/lab/zstd-archive:1")
    other = Engine(str(tmp_path / "other"))

    lines = load(other, str(path))

    assert [layer["mediaType"] for layer in archive_manifest(path)["layers"]] == [OCI_ZSTD_LAYER]
    assert lines == ["Loaded image: lab/zstd-archive:1"]
    loaded = other.image("lab/zstd-archive:1")
    assert loaded.id == image.id
    assert loaded.diff_ids == image.diff_ids
    assert file_digest(other.store.blob_path(image.diff_ids[0])) == image.diff_ids[0]
