"""A real registry (Debian's docker-registry) on 127.0.0.1 and a store holding busybox.

Each test module gets its own registry process with its storage in a
temporary directory. The fixture stops that process when the module ends.
"""

import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from layerlab.engine.api import Engine
from layerlab.engine.image import DEFAULT_PATH, ImageDraft, write_image
from layerlab.engine.reference import Reference

log = logging.getLogger(__name__)

REGISTRY_BINARY = "/usr/bin/docker-registry"
START_TIMEOUT = 20


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class RegistryServer:
    """A running docker-registry: `host` is 127.0.0.1:PORT."""

    directory: Path
    port: int
    process: subprocess.Popen | None = None
    extra_config: str = ""
    log_path: Path = field(init=False)

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        config = self.directory / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.directory / 'data'}}}, delete: {{enabled: true}}}}\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n{self.extra_config}"
        )
        self.log_path = self.directory / "registry.log"
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen([REGISTRY_BINARY, "serve", str(config)],
                                            stdout=log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"docker-registry did not listen on {self.host} within {START_TIMEOUT} s")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# The manifest types that Docker, podman and layerlab push; the registry picks the stored one.
MANIFEST_ACCEPT = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


@dataclass
class StoredManifest:
    """A manifest as the registry serves it: `digest` is the sha256 of `data`."""

    media_type: str
    digest: str
    data: bytes

    @property
    def document(self):
        return json.loads(self.data)


def stored_manifest(server, repository, reference):
    """GET `repository:reference` from the registry, checking its digest header against its bytes."""
    request = urllib.request.Request(f"http://{server.host}/v2/{repository}/manifests/{reference}",
                                     headers={"Accept": MANIFEST_ACCEPT})
    with urllib.request.urlopen(request, timeout=30) as response:
        data = response.read()
        header_digest = response.headers["Docker-Content-Digest"]
        media_type = response.headers["Content-Type"].split(";")[0]
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert header_digest == digest, (
        f"the registry names {repository}:{reference} {header_digest}, but its bytes hash to {digest}"
    )
    return StoredManifest(media_type, digest, data)


def start_registry(tmp_path_factory, extra_config=""):
    if not os.path.exists(REGISTRY_BINARY):
        pytest.skip("docker-registry is not installed: apt-get install -y docker-registry")
    directory = tmp_path_factory.mktemp("registry")
    return RegistryServer(directory, free_port(), extra_config=extra_config).start()


def start_token_registry(tmp_path_factory, token_server):
    """Start `token_server` and a docker-registry that trusts its tokens; return the registry.

    The caller stops both. `token_server` is a `token_server.TokenServer`.
    """
    bundle = tmp_path_factory.mktemp("token-signer") / "token-signer.crt"
    bundle.write_bytes(token_server.certificate_pem())
    token_server.start()
    try:
        return start_registry(tmp_path_factory, token_server.registry_config(bundle))
    except BaseException:
        # Also when start_registry skips the module: the server thread must not outlive it.
        token_server.stop()
        raise


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    server = start_registry(tmp_path_factory)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def docker_config(tmp_path, monkeypatch):
    """An empty DOCKER_CONFIG directory, so tests never read or write the real ~/.docker.

    It is autouse so that it is set before `cli` copies the environment.
    """
    directory = tmp_path / "docker-config"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    return directory


@pytest.fixture
def engine(store_root, docker_config):
    return Engine(str(store_root))


def import_busybox(engine, tar_path, name="busybox:latest", label=""):
    """Store the busybox rootfs tar as a one-layer image tagged `name`; return the image."""
    with engine.store.blob_writer() as writer, open(tar_path, "rb") as source:
        while chunk := source.read(1 << 20):
            writer.write(chunk)
        digest = writer.commit()
        size = writer.size
    draft = ImageDraft.empty()
    draft.add_layer(digest, size)
    draft.add_history(f"/bin/sh -c #(nop) ADD file:{digest[7:]} in / ", empty_layer=False)
    draft.settings["Env"] = [f"PATH={DEFAULT_PATH}"]
    draft.settings["Cmd"] = ["sh"]
    if label:
        draft.settings["Labels"] = {"test": label}
    image = write_image(engine.store, draft)
    engine.images.tag(image, Reference.parse(name))
    return image


@pytest.fixture
def busybox(engine, busybox_rootfs_tar):
    return import_busybox(engine, busybox_rootfs_tar)


def skopeo():
    path = shutil.which("skopeo")
    if path is None:
        pytest.skip("skopeo is not installed: apt-get install -y skopeo")
    return path
