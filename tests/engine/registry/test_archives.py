"""save and load in docker-archive and oci-archive form, against Docker and podman."""

import subprocess

import pytest

from layerlab.engine.api import Engine
from layerlab.engine.errors import LayerlabError
from layerlab.engine.transfer.archives import load, save


@pytest.mark.parametrize("format", ["docker-archive", "oci-archive"])
def test_round_trip_keeps_image_id(engine, busybox, tmp_path, format):
    archive = tmp_path / "busybox.tar"
    with open(archive, "wb") as target:
        save(engine, ["busybox"], target, format=format)
    other = Engine(str(tmp_path / "other"))

    lines = load(other, str(archive))

    assert lines == ["Loaded image: busybox:latest"]
    assert other.image("busybox").id == busybox.id


def test_save_by_id_loads_untagged(engine, busybox, tmp_path):
    archive = tmp_path / "untagged.tar"
    with open(archive, "wb") as target:
        save(engine, [busybox.id], target)
    other = Engine(str(tmp_path / "other"))

    lines = load(other, str(archive))

    assert lines == [f"Loaded image ID: {busybox.id}"]


def test_load_rejects_other_tar(engine, tmp_path):
    archive = tmp_path / "empty.tar"
    subprocess.run(["tar", "-cf", str(archive), "-T", "/dev/null"], check=True)

    with pytest.raises(LayerlabError, match="neither a docker-archive"):
        load(engine, str(archive))


def test_cli_save_load(cli, engine, busybox, tmp_path):
    archive = tmp_path / "cli.tar"

    saved = cli("save", "-o", archive, "busybox")
    removed = cli("rmi", "busybox")
    loaded = cli("load", "-i", archive)

    assert saved.returncode == 0, saved.stderr
    assert removed.returncode == 0, removed.stderr
    assert loaded.stdout == "Loaded image: busybox:latest\n", loaded.stderr


def test_docker_loads_our_archive(engine, busybox, dockerd, tmp_path):
    archive = tmp_path / "for-docker.tar"
    engine.tag("busybox", "layerlab-saved:1")
    with open(archive, "wb") as target:
        save(engine, ["layerlab-saved:1"], target)

    dockerd.docker("load", "-i", archive)
    docker_id = dockerd.docker("image", "inspect", "--format", "{{.Id}}", "layerlab-saved:1").stdout.strip()
    ran = dockerd.docker("run", "--rm", "--network", "none", "layerlab-saved:1", "echo", "from docker", check=False)

    assert docker_id == busybox.id
    assert ran.stdout == "from docker\n", ran.stderr


def test_layerlab_loads_docker_save(engine, busybox_rootfs_tar, dockerd, tmp_path):
    docker_id = dockerd.import_rootfs(busybox_rootfs_tar, "docker-made:1")
    archive = tmp_path / "from-docker.tar"
    dockerd.docker("save", "-o", archive, "docker-made:1")

    lines = load(engine, str(archive))

    assert lines == ["Loaded image: docker-made:1"]
    assert engine.image("docker-made:1").id == docker_id


def test_podman_loads_our_archives(engine, busybox, podman, tmp_path):
    engine.tag("busybox", "localhost/podman-check:1")
    for format in ("docker-archive", "oci-archive"):
        archive = tmp_path / f"{format}.tar"
        with open(archive, "wb") as target:
            save(engine, ["localhost/podman-check:1"], target, format=format)

        podman.podman("load", "-i", archive, timeout=120)
        podman_id = podman.inspect_image("localhost/podman-check:1")["Id"]

        assert podman_id == busybox.id.removeprefix("sha256:"), format
