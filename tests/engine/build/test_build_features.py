"""Builder features that Docker 20.10 cannot check: heredocs, mounts, URLs, reproducible IDs, miss reasons."""

import hashlib
import http.server
import os
import tempfile
import threading

import pytest

from layerlab.engine.api import Engine
from layerlab.engine.build import BuildRequest, Builder
from layerlab.engine.errors import DockerfileError
from tests.build_oracle.conftest import import_like_docker
from tests.build_oracle.tree import layerlab_tree


@pytest.fixture
def engine(store_root, busybox_rootfs_tar):
    engine = Engine(str(store_root))
    import_like_docker(engine, busybox_rootfs_tar, "busybox:latest")
    return engine


def build(engine, context, dockerfile, **options):
    (context / "Dockerfile").write_text(dockerfile)
    events = []
    result = Builder(engine).build(BuildRequest(context=str(context), **options), events.append)
    return engine.images.resolve(result.image_id), events


def tree(engine, image, tmp_path):
    return layerlab_tree(engine, image, tempfile.mkdtemp(dir=tmp_path))


def read(engine, image, tmp_path, path):
    root = tempfile.mkdtemp(dir=tmp_path)
    from layerlab.engine.unpack import apply_layer

    for layer in image.layers:
        with open(engine.store.blob_path(layer.digest), "rb") as blob:
            apply_layer(blob, root)
    with open(os.path.join(root, path)) as handle:
        return handle.read()


def test_run_heredoc_runs_body(engine, tmp_path):
    image, _ = build(engine, tmp_path, "FROM busybox\nRUN <<EOF\necho one > /one\necho two >> /one\nEOF\n"
                                       "RUN <<EOF sh\necho piped > /piped\nEOF\n")

    assert read(engine, image, tmp_path, "one") == "one\ntwo\n"
    assert read(engine, image, tmp_path, "piped") == "piped\n"


def test_copy_heredoc_with_chmod(engine, tmp_path):
    image, _ = build(engine, tmp_path, "FROM busybox\nCOPY --chmod=755 <<EOF /usr/bin/hello\n#!/bin/sh\nEOF\n")

    entry = tree(engine, image, tmp_path)["usr/bin/hello"]
    assert entry[1] == "0o755"


def test_run_mounts_stay_out_of_layer(engine, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f").write_text("from context\n")
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    dockerfile = ("FROM busybox\n"
                  "RUN --mount=type=cache,target=/cache echo x >> /cache/n && wc -l < /cache/n > /count\n"
                  "RUN --mount=type=bind,source=data,target=/src cat /src/f > /bound\n"
                  "RUN --mount=type=tmpfs,target=/scratch touch /scratch/t && ls /scratch > /listed\n"
                  "RUN --mount=type=secret,id=token cat /run/secrets/token > /leaked\n"
                  "RUN --network=none cat /proc/net/dev > /netdev\n")
    image, _ = build(engine, tmp_path, dockerfile, secrets={"token": str(secret)})
    files = tree(engine, image, tmp_path)

    assert read(engine, image, tmp_path, "count").strip() == "1"
    assert read(engine, image, tmp_path, "bound") == "from context\n"
    assert read(engine, image, tmp_path, "listed") == "t\n"
    assert read(engine, image, tmp_path, "leaked") == "s3cret\n"
    assert "eth0" not in read(engine, image, tmp_path, "netdev")
    for mount_point in ("cache", "src", "scratch", "run/secrets"):
        assert mount_point not in files, mount_point


def test_cache_mount_persists(engine, tmp_path):
    dockerfile = "FROM busybox\nRUN --mount=type=cache,target=/c echo x >> /c/n && wc -l < /c/n > /count\n"
    build(engine, tmp_path, dockerfile)
    image, _ = build(engine, tmp_path, dockerfile, no_cache=True)

    assert read(engine, image, tmp_path, "count").strip() == "2"


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             lambda *a: _Handler(*a, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_add_url_checks_checksum(engine, tmp_path, http_root):
    served, base = http_root
    (served / "file.txt").write_text("downloaded\n")
    digest = hashlib.sha256(b"downloaded\n").hexdigest()
    context = tmp_path / "ctx"
    context.mkdir()

    image, _ = build(engine, context, f"FROM busybox\nADD --checksum=sha256:{digest} {base}/file.txt /dl/\n")
    assert tree(engine, image, tmp_path)["dl/file.txt"][1] == "0o600"

    with pytest.raises(DockerfileError, match="checksum mismatch"):
        build(engine, context, f"FROM busybox\nADD --checksum=sha256:{'0' * 64} {base}/file.txt /dl/\n")


def test_source_date_epoch_reproducible(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    (tmp_path / "a.txt").write_text("a\n")
    dockerfile = "FROM busybox\nCOPY a.txt /a.txt\nRUN echo built > /b\nENV X=1\n"

    first, _ = build(engine, tmp_path, dockerfile, no_cache=True)
    second, _ = build(engine, tmp_path, dockerfile, no_cache=True)

    assert first.id == second.id
    assert first.created == "2023-11-14T22:13:20Z"


def test_miss_reason_names_file_and_arg(engine, tmp_path):
    (tmp_path / "a.txt").write_text("a\n")
    dockerfile = "FROM busybox\nCOPY a.txt /a.txt\nARG V\nRUN echo $V > /v\n"
    build(engine, tmp_path, dockerfile, build_args={"V": "1"})
    (tmp_path / "a.txt").write_text("changed\n")
    _, events = build(engine, tmp_path, dockerfile, build_args={"V": "1"})
    reasons = [event.cache_miss_reason for event in events if type(event).__name__ == "StepDone"]
    assert "content changed: a.txt" in reasons

    _, events = build(engine, tmp_path, dockerfile, build_args={"V": "2"})
    reasons = [event.cache_miss_reason for event in events if type(event).__name__ == "StepDone"]
    assert any(reason.startswith("build arg changed: V") for reason in reasons)


def test_onbuild_triggers_run_and_clear(engine, tmp_path):
    build(engine, tmp_path, "FROM busybox\nONBUILD RUN echo trig > /trig\n", tags=["parent:latest"])
    image, _ = build(engine, tmp_path, "FROM parent\nENV X=1\n")

    assert read(engine, image, tmp_path, "trig") == "trig\n"
    assert not image.settings.get("OnBuild")


def test_copy_parents_and_exclude(engine, tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "f").write_text("f\n")
    (tmp_path / "d" / "x.log").write_text("log\n")
    image, _ = build(engine, tmp_path, "FROM busybox\nCOPY --parents d/sub/f /p/\nCOPY --exclude=*.log d /e\n")
    files = tree(engine, image, tmp_path)

    assert "p/d/sub/f" in files
    assert "e/sub/f" in files
    assert "e/x.log" not in files
