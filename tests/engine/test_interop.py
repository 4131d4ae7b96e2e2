"""skopeo and umoci read layerlab's store as the OCI image layout it is."""

import hashlib
import json
import os
import shutil
import stat
import subprocess

import pytest

from layerlab.engine.api import Engine
from layerlab.engine.archive import apply_layer

SKOPEO = shutil.which("skopeo")
UMOCI = shutil.which("umoci")

DOCKERFILE = """\
FROM busybox
RUN echo hi > /hello && rm /bin/ls && mkdir -p /d/e && ln -s /hello /d/link && chmod 0750 /d/e
RUN rm -r /d/e && mkfifo /d/fifo && echo second > /hello
ENV A=1
CMD ["sh"]
"""


@pytest.fixture
def built(store_root, busybox_template, cli, tmp_path):
    shutil.copytree(busybox_template, store_root, dirs_exist_ok=True, symlinks=True)
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE)
    result = cli("build", "-t", "interop", str(context))
    assert result.returncode == 0, result.stderr
    return store_root


def skopeo(*args):
    return subprocess.run([SKOPEO, *args], capture_output=True, text=True, timeout=60)


def tree_of(root):
    """Map each path under `root` to (type, mode, content hash or link target)."""
    entries = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            relative = "/" + os.path.relpath(path, root)
            if stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    content = hashlib.sha256(handle.read()).hexdigest()
            elif stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            else:
                content = ""
            entries[relative] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), content)
    return entries


@pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")
def test_skopeo_config_digest(built, cli):
    image_id = json.loads(cli("inspect", "interop").stdout)[0]["Id"]

    raw = skopeo("inspect", "--raw", f"oci:{built}:docker.io/library/interop:latest")

    assert raw.returncode == 0, raw.stderr
    assert json.loads(raw.stdout)["config"]["digest"] == image_id


@pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")
def test_skopeo_config_fields(built):
    config = skopeo("inspect", "--config", f"oci:{built}:docker.io/library/interop:latest")

    document = json.loads(config.stdout)
    assert document["config"]["Cmd"] == ["sh"]
    assert "A=1" in document["config"]["Env"]
    assert document["rootfs"]["type"] == "layers"


@pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")
def test_skopeo_layer_digests(built, cli):
    layers = json.loads(cli("inspect", "interop").stdout)[0]["RootFS"]["Layers"]

    inspected = skopeo("inspect", f"oci:{built}:docker.io/library/interop:latest")

    assert json.loads(inspected.stdout)["Layers"] == layers


@pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")
def test_skopeo_reads_base(built):
    listing = skopeo("inspect", f"oci:{built}:docker.io/library/busybox:latest")

    assert listing.returncode == 0, listing.stderr


@pytest.mark.skipif(UMOCI is None, reason="umoci is not installed")
def test_umoci_matches_layers(built, tmp_path):
    bundle = tmp_path / "bundle"
    flattened = tmp_path / "flattened"
    flattened.mkdir()

    unpack = subprocess.run([UMOCI, "unpack", "--image", f"{built}:docker.io/library/interop:latest",
                             str(bundle)], capture_output=True, text=True, timeout=120)
    image = Engine(str(built)).image("interop")
    for layer in image.layers:
        with open(os.path.join(built, "blobs", "sha256", layer.digest.removeprefix("sha256:")), "rb") as blob:
            apply_layer(blob, str(flattened))

    assert unpack.returncode == 0, unpack.stderr
    assert tree_of(bundle / "rootfs") == tree_of(flattened)


@pytest.mark.skipif(UMOCI is None, reason="umoci is not installed")
def test_umoci_sees_changes(built, tmp_path):
    bundle = tmp_path / "bundle"

    subprocess.run([UMOCI, "unpack", "--image", f"{built}:docker.io/library/interop:latest", str(bundle)],
                   capture_output=True, text=True, timeout=120, check=True)
    rootfs = bundle / "rootfs"

    assert (rootfs / "hello").read_text() == "second\n"
    assert not (rootfs / "bin" / "ls").exists()
    assert not (rootfs / "d" / "e").exists()
    assert stat.S_ISFIFO((rootfs / "d" / "fifo").lstat().st_mode)
    assert os.readlink(rootfs / "d" / "link") == "/hello"
