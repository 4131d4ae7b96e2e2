"""A fake registry on 127.0.0.1 that misbehaves: wrong digests, truncated blobs, huge manifests."""

import gzip
import hashlib
import http.server
import io
import json
import os
import sys
import tarfile
import threading

import pytest
import zstandard

from layerlab.engine.errors import LayerlabError
from layerlab.engine.registry.pull import pull
from layerlab.engine.registry.search import search

OCI_ZSTD_LAYER = "application/vnd.oci.image.layer.v1.tar+zstd"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("hello.txt")
        payload = b"hello from a fake registry\n"
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


class FakeRegistry:
    """Routes: /v2/<repo>/manifests/<tag> and /v2/<repo>/blobs/<digest> from dictionaries."""

    def __init__(self):
        self.manifests = {}
        self.blobs = {}
        # Bytes actually sent for a blob, when they must differ from what its digest promises.
        self.bodies = {}
        self.search_results = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if path == "/v2/":
                    return self.reply(200, b"{}")
                if path == "/v1/search":
                    return self.reply(200, json.dumps({"results": fake.search_results}).encode())
                if "/manifests/" in path:
                    repository, reference = path[len("/v2/"):].split("/manifests/")
                    entry = fake.manifests.get((repository, reference))
                    if entry is None:
                        return self.reply(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}')
                    media_type, data = entry
                    return self.reply(200, data, media_type)
                if "/blobs/" in path:
                    digest = path.rsplit("/", 1)[1]
                    if digest not in fake.blobs:
                        return self.reply(404, b"{}")
                    return self.reply(200, fake.bodies.get(digest, fake.blobs[digest]))
                return self.reply(404, b"{}")

            def reply(self, status, body, content_type="application/json"):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class QuietServer(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                # The client hangs up on purpose after an oversized or bad response.
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self):
        return f"127.0.0.1:{self.server.server_address[1]}"

    def add_image(self, repository, tag, layer_body=None, layer_media_type="application/vnd.oci.image.layer.v1.tar+gzip",
                  compress=None):
        """Add a one-layer image; `layer_body` replaces the layer bytes served, keeping the manifest's digest.

        `compress` turns the layer tar into the blob that the manifest
        describes (gzip unless given), so a broken blob can have a matching digest.
        """
        tar = layer_tar()
        compressed = compress(tar) if compress else gzip.compress(tar, mtime=0)
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]}}).encode()
        self.blobs[sha256(config)] = config
        self.blobs[sha256(compressed)] = compressed
        # Blobs are keyed by digest, so an earlier test's override of the same blob must not leak into this one.
        self.bodies.pop(sha256(compressed), None)
        if layer_body is not None:
            self.bodies[sha256(compressed)] = layer_body(compressed)
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                       "size": len(config)},
            "layers": [{"mediaType": layer_media_type, "digest": sha256(compressed), "size": len(compressed)}],
        }).encode()
        self.manifests[(repository, tag)] = ("application/vnd.oci.image.manifest.v1+json", manifest)
        return sha256(config), sha256(tar)


@pytest.fixture(scope="module")
def fake():
    registry = FakeRegistry()
    registry.thread.start()
    yield registry
    registry.server.shutdown()
    registry.server.server_close()


def stored_nothing(engine, diff_id):
    return not engine.store.has_blob(diff_id) and not os.listdir(engine.store.tmp_dir) and not engine.images.entries()


def test_good_image_pulls(engine, fake):
    image_id, diff_id = fake.add_image("good/app", "1")

    result = pull(engine, f"{fake.host}/good/app:1")

    assert result.image.id == image_id
    assert result.image.diff_ids == [diff_id]
    assert engine.store.has_blob(diff_id)


def test_wrong_layer_digest_stores_nothing(engine, fake):
    _, diff_id = fake.add_image("bad/digest", "1", layer_body=lambda data: gzip.compress(b"other" * 100))

    with pytest.raises(LayerlabError, match="digest mismatch|truncated|larger"):
        pull(engine, f"{fake.host}/bad/digest:1")

    assert stored_nothing(engine, diff_id)


def test_same_size_wrong_layer_stores_nothing(engine, fake):
    def flip_last_byte(data):
        return data[:-1] + bytes([data[-1] ^ 0xFF])

    _, diff_id = fake.add_image("bad/flipped", "1", layer_body=flip_last_byte)

    with pytest.raises(LayerlabError, match="digest mismatch|diff ID|truncated|CRC|invalid"):
        pull(engine, f"{fake.host}/bad/flipped:1")

    assert stored_nothing(engine, diff_id)


def test_truncated_layer_stores_nothing(engine, fake):
    _, diff_id = fake.add_image("bad/truncated", "1", layer_body=lambda data: data[: len(data) // 2])

    with pytest.raises(LayerlabError, match="truncated"):
        pull(engine, f"{fake.host}/bad/truncated:1")

    assert stored_nothing(engine, diff_id)


def test_oversized_manifest_rejected(engine, fake):
    huge = json.dumps({"schemaVersion": 2, "padding": "x" * (4 * 1024 * 1024)}).encode()
    fake.manifests[("bad/huge", "1")] = ("application/vnd.oci.image.manifest.v1+json", huge)

    with pytest.raises(LayerlabError, match="limit"):
        pull(engine, f"{fake.host}/bad/huge:1")

    assert not engine.images.entries()


def test_manifest_digest_mismatch_rejected(engine, fake):
    fake.add_image("bad/pinned", "1")
    wrong = "sha256:" + "0" * 64
    fake.manifests[("bad/pinned", wrong)] = fake.manifests[("bad/pinned", "1")]

    with pytest.raises(LayerlabError, match="other content"):
        pull(engine, f"{fake.host}/bad/pinned@{wrong}")

    assert not engine.images.entries()


def zstd_frames(*parts, checksum=False):
    compressor = zstandard.ZstdCompressor(write_checksum=checksum)
    return b"".join(compressor.compress(part) for part in parts)


def zstd_layer(tar):
    return zstd_frames(tar)


def add_zstd_image(fake, repository, compress=zstd_layer, layer_body=None):
    return fake.add_image(repository, "1", layer_media_type=OCI_ZSTD_LAYER, compress=compress, layer_body=layer_body)


def test_zstd_layer_pulls(engine, fake):
    image_id, diff_id = add_zstd_image(fake, "zstd/good")

    result = pull(engine, f"{fake.host}/zstd/good:1")

    assert result.image.id == image_id
    assert engine.store.has_blob(diff_id)


def test_zstd_layer_of_several_frames_pulls(engine, fake):
    def three_frames(tar):
        return zstd_frames(tar[:1000], tar[1000:5000], tar[5000:])

    image_id, diff_id = add_zstd_image(fake, "zstd/frames", compress=three_frames)

    result = pull(engine, f"{fake.host}/zstd/frames:1")

    assert result.image.id == image_id
    assert engine.store.has_blob(diff_id)


def test_zstd_layer_needs_module(engine, fake, monkeypatch):
    # None in sys.modules makes `import zstandard` raise ImportError, as on a host without the module.
    monkeypatch.setitem(sys.modules, "zstandard", None)
    _, diff_id = add_zstd_image(fake, "zstd/app")

    with pytest.raises(LayerlabError, match="pip install zstandard"):
        pull(engine, f"{fake.host}/zstd/app:1")

    assert stored_nothing(engine, diff_id)


def test_zstd_truncated_download_stores_nothing(engine, fake):
    _, diff_id = add_zstd_image(fake, "zstd/short-download", layer_body=lambda data: data[: len(data) // 2])

    with pytest.raises(LayerlabError, match="truncated"):
        pull(engine, f"{fake.host}/zstd/short-download:1")

    assert stored_nothing(engine, diff_id)


def test_zstd_cut_stream_stores_nothing(engine, fake):
    # The manifest describes the cut blob, so only the decompressor can notice the missing end.
    _, diff_id = add_zstd_image(fake, "zstd/cut", compress=lambda tar: zstd_layer(tar)[:-8])

    with pytest.raises(LayerlabError, match="zstd stream ended early"):
        pull(engine, f"{fake.host}/zstd/cut:1")

    assert stored_nothing(engine, diff_id)


def test_zstd_corrupt_frame_stores_nothing(engine, fake):
    def corrupt(tar):
        data = bytearray(zstd_frames(tar, checksum=True))
        data[len(data) // 2] ^= 0xFF
        return bytes(data)

    _, diff_id = add_zstd_image(fake, "zstd/corrupt", compress=corrupt)

    with pytest.raises(LayerlabError, match="not valid zstd|diff ID"):
        pull(engine, f"{fake.host}/zstd/corrupt:1")

    assert stored_nothing(engine, diff_id)


def test_zstd_media_type_on_gzip_rejected(engine, fake):
    _, diff_id = add_zstd_image(fake, "zstd/not-zstd", compress=lambda tar: gzip.compress(tar, mtime=0))

    with pytest.raises(LayerlabError, match="not valid zstd"):
        pull(engine, f"{fake.host}/zstd/not-zstd:1")

    assert stored_nothing(engine, diff_id)


def test_zstd_broken_layer_cli_error(cli, fake):
    add_zstd_image(fake, "zstd/cli", compress=lambda tar: zstd_layer(tar)[:-8])

    result = cli("pull", f"{fake.host}/zstd/cli:1")

    assert result.returncode != 0
    assert "zstd stream ended early" in result.stderr
    assert "Traceback" not in result.stderr


def test_search_docker_hub_api(fake):
    fake.search_results = [
        {"name": "busybox", "description": "Busybox base image.", "star_count": 3000,
         "is_official": True, "is_automated": False},
        {"name": "someone/busybox-tools", "description": "A long description " * 5, "star_count": 2,
         "is_official": False, "is_automated": True},
    ]

    text = search("busybox", index_url=f"http://{fake.host}").text()

    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL", "AUTOMATED"]
    assert lines[1].split() == ["busybox", "Busybox", "base", "image.", "3000", "[OK]"]
    assert lines[2].startswith("someone/busybox-tools")
    assert "..." in lines[2]
    assert lines[2].rstrip().endswith("[OK]")


@pytest.fixture
def fake_index(fake, monkeypatch):
    """Point `layerlab search` at the fake server; request it before `cli`, which copies the environment."""
    monkeypatch.setenv("LAYERLAB_SEARCH_INDEX", f"http://{fake.host}")
    return fake


def test_search_cli_uses_index_override(fake_index, cli):
    fake_index.search_results = [{"name": "alpine", "description": "", "star_count": 1,
                                  "is_official": True, "is_automated": False}]

    result = cli("search", "alpine")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split() == ["alpine", "1", "[OK]"]
