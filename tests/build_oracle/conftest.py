"""Fixtures for differential build tests: one busybox base in layerlab and in the private dockerd."""

import functools
import http.server
import json
import os
import threading

import pytest

from layerlab.engine.api import Engine
from layerlab.engine.image import ImageDraft, write_image
from layerlab.engine.reference import Reference
from tests.build_oracle.buildah import oracle_buildah  # noqa: F401 (a fixture)

BASE = "busybox:latest"


def import_like_docker(engine, tar_path, name):
    """Store the rootfs tar as one layer with Cmd ["sh"] and no Env, as `docker import --change` does."""
    with engine.store.blob_writer() as writer, open(tar_path, "rb") as source:
        while chunk := source.read(1 << 20):
            writer.write(chunk)
        digest = writer.commit()
        size = writer.size
    draft = ImageDraft.empty()
    draft.add_layer(digest, size)
    draft.add_history("Imported from -", empty_layer=False)
    draft.settings["Cmd"] = ["sh"]
    image = write_image(engine.store, draft)
    engine.images.tag(image, Reference.parse(name))
    return image


@pytest.fixture(scope="session")
def oracle_store(tmp_path_factory, busybox_rootfs_tar):
    """A layerlab Engine shared by the differential tests, with busybox imported."""
    root = tmp_path_factory.mktemp("oracle-store")
    engine = Engine(str(root))
    import_like_docker(engine, busybox_rootfs_tar, BASE)
    return engine


@pytest.fixture(scope="session")
def oracle_dockerd(dockerd, busybox_rootfs_tar):
    """The private dockerd with the same busybox imported as busybox:latest."""
    dockerd.import_rootfs(busybox_rootfs_tar, BASE)
    return dockerd


def case_options(case_dir):
    """Read a case's optional case.json: builders to skip and documented differences."""
    path = os.path.join(case_dir, "case.json")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served_folder():
    """Return a function that serves a folder over HTTP on 127.0.0.1 and returns its base URL."""
    servers = []

    def serve(folder):
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()
