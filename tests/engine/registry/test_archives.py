"""save and load in docker-archive and oci-archive form, against Docker and podman."""

import shutil
import subprocess
import tempfile

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


def test_podman_loads_our_archives(engine, busybox, tmp_path):
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    engine.tag("busybox", "localhost/podman-check:1")
    root = tmp_path / "podman-root"
    # podman rejects a runroot path longer than 50 characters.
    runroot = tempfile.mkdtemp(prefix="ll-podman-")
    for format in ("docker-archive", "oci-archive"):
        archive = tmp_path / f"{format}.tar"
        with open(archive, "wb") as target:
            save(engine, ["localhost/podman-check:1"], target, format=format)

        loaded = subprocess.run(["podman", "--root", root, "--runroot", runroot, "--storage-driver", "vfs",
                                 "load", "-i", archive], capture_output=True, text=True, timeout=120)
        assert loaded.returncode == 0, loaded.stderr
        podman_id = subprocess.run(
            ["podman", "--root", root, "--runroot", runroot, "--storage-driver", "vfs",
             "image", "inspect", "--format", "{{.Id}}", "localhost/podman-check:1"],
            check=True, capture_output=True, text=True, timeout=60,
        ).stdout.strip()

        assert podman_id == busybox.id.removeprefix("sha256:"), format
    # The vfs driver mounts nothing, so removing the directories cleans up completely.
    shutil.rmtree(runroot, ignore_errors=True)
