"""The OCI image layout on disk: atomic blobs, digest checks, index.json under a lock."""

import hashlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from layerlab.engine.errors import InvalidArgumentError, NotFoundError
from layerlab.engine.store import ANNOTATION_REF_NAME, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST, Descriptor, Store

TAGS_PER_PROCESS = 50


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_names(store):
    return sorted(os.listdir(store.blob_dir))


def test_layout_file(store_root):
    Store(str(store_root))

    layout = json.loads((store_root / "oci-layout").read_text())

    assert layout == {"imageLayoutVersion": "1.0.0"}


def test_layout_empty_index(store_root):
    Store(str(store_root))

    index = json.loads((store_root / "index.json").read_text())

    assert index["schemaVersion"] == 2
    assert index["mediaType"] == MEDIA_TYPE_INDEX
    assert index["manifests"] == []


def test_layout_folders(store_root):
    Store(str(store_root))

    assert (store_root / "blobs" / "sha256").is_dir()
    assert (store_root / "tmp").is_dir()
    assert (store_root / "locks").is_dir()


def test_put_blob_named_by_digest(store_root):
    store = Store(str(store_root))

    digest = store.put_blob(b"hello")

    assert digest == sha256(b"hello")
    assert store.read_blob(digest) == b"hello"
    assert blob_names(store) == [digest.removeprefix("sha256:")]


def test_put_blob_twice(store_root):
    store = Store(str(store_root))

    first = store.put_blob(b"same")
    second = store.put_blob(b"same")

    assert first == second
    assert len(blob_names(store)) == 1
    assert os.listdir(store.tmp_dir) == []


def test_put_json_canonical(store_root):
    store = Store(str(store_root))

    digest, size = store.put_json({"b": 1, "a": [1, 2]})

    assert store.read_blob(digest) == b'{"a":[1,2],"b":1}'
    assert size == len(b'{"a":[1,2],"b":1}')


def test_blob_writer_interrupted(store_root):
    store = Store(str(store_root))

    with pytest.raises(KeyboardInterrupt):
        with store.blob_writer() as writer:
            writer.write(b"x" * 100_000)
            writer.flush()
            raise KeyboardInterrupt

    assert blob_names(store) == []
    assert os.listdir(store.tmp_dir) == []


def test_blob_writer_closed_without_commit(store_root):
    store = Store(str(store_root))

    with store.blob_writer() as writer:
        writer.write(b"partial")

    assert blob_names(store) == []
    assert os.listdir(store.tmp_dir) == []


def test_blob_writer_digest_mismatch(store_root):
    store = Store(str(store_root))
    wrong = sha256(b"other")

    with pytest.raises(InvalidArgumentError) as caught:
        with store.blob_writer() as writer:
            writer.write(b"content")
            writer.commit(wrong)

    assert wrong in str(caught.value)
    assert sha256(b"content") in str(caught.value)
    assert blob_names(store) == []
    assert os.listdir(store.tmp_dir) == []


def test_blob_writer_size_mismatch(store_root):
    store = Store(str(store_root))

    with pytest.raises(InvalidArgumentError) as caught:
        with store.blob_writer() as writer:
            writer.write(b"content")
            writer.commit(sha256(b"content"), expected_size=3)

    assert "size mismatch" in str(caught.value)
    assert blob_names(store) == []


def test_blob_writer_expected_digest(store_root):
    store = Store(str(store_root))

    with store.blob_writer() as writer:
        writer.write(b"content")
        digest = writer.commit(sha256(b"content"))

    assert digest == sha256(b"content")
    assert store.has_blob(digest)


def test_blob_writer_hashed_by_caller(store_root):
    store = Store(str(store_root))

    with store.blob_writer(hashed_by_caller=True) as writer:
        writer.write(b"layer")
        digest = writer.commit(sha256(b"layer"))

    assert store.read_blob(digest) == b"layer"


def test_hashed_by_caller_needs_digest(store_root):
    store = Store(str(store_root))

    with pytest.raises(ValueError):
        with store.blob_writer(hashed_by_caller=True) as writer:
            writer.write(b"layer")
            writer.commit()

    assert os.listdir(store.tmp_dir) == []


def test_read_blob_missing(store_root):
    store = Store(str(store_root))
    digest = sha256(b"absent")

    with pytest.raises(NotFoundError) as caught:
        store.read_blob(digest)

    assert digest in str(caught.value)
    assert "fsck" in str(caught.value)


def test_read_blob_invalid_digest(store_root):
    store = Store(str(store_root))

    with pytest.raises(InvalidArgumentError):
        store.read_blob("sha256:../../etc/passwd")


def add_tags(root, prefix, count):
    store = Store(root)
    for number in range(count):
        name = f"docker.io/library/{prefix}:{number}"
        descriptor = Descriptor(MEDIA_TYPE_MANIFEST, sha256(name.encode()), 1, {ANNOTATION_REF_NAME: name})

        def change(descriptors, descriptor=descriptor):
            descriptors.append(descriptor)

        store.update_index(change)


def test_index_concurrent_updates(store_root):
    Store(str(store_root))
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=add_tags, args=(str(store_root), prefix, TAGS_PER_PROCESS))
        for prefix in ("first", "second")
    ]

    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)

    assert [worker.exitcode for worker in workers] == [0, 0]
    index = json.loads((store_root / "index.json").read_text())
    names = {entry["annotations"][ANNOTATION_REF_NAME] for entry in index["manifests"]}
    expected = {f"docker.io/library/{prefix}:{n}" for prefix in ("first", "second") for n in range(TAGS_PER_PROCESS)}
    assert names == expected
    assert len(index["manifests"]) == 2 * TAGS_PER_PROCESS
    assert os.listdir(store_root / "tmp") == []


def test_index_change_fails(store_root):
    store = Store(str(store_root))
    before = (store_root / "index.json").read_bytes()

    def change(descriptors):
        descriptors.append(Descriptor(MEDIA_TYPE_MANIFEST, sha256(b"x"), 1))
        raise RuntimeError("change failed")

    with pytest.raises(RuntimeError):
        store.update_index(change)

    assert (store_root / "index.json").read_bytes() == before


def test_index_descriptor_round_trip(store_root):
    store = Store(str(store_root))
    descriptor = Descriptor(MEDIA_TYPE_MANIFEST, sha256(b"m"), 7, {ANNOTATION_REF_NAME: "docker.io/library/a:b"})

    store.update_index(lambda descriptors: descriptors + [descriptor])

    assert store.descriptors() == [descriptor]


def test_reopen_keeps_index(store_root):
    store = Store(str(store_root))
    descriptor = Descriptor(MEDIA_TYPE_MANIFEST, sha256(b"m"), 7)
    store.update_index(lambda descriptors: descriptors + [descriptor])

    reopened = Store(str(store_root))

    assert reopened.descriptors() == [descriptor]


KILLED_WRITER = """
import sys, time
from layerlab.engine.store import Store
writer = Store(sys.argv[1]).blob_writer()
writer.write(b"half a layer")
writer.flush()
print("writing", flush=True)
time.sleep(600)
"""


def test_stale_tmp_of_killed_writer_removed(store_root):
    store = Store(str(store_root))
    writer_process = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(store_root)],
                                      stdout=subprocess.PIPE, text=True)
    try:
        assert writer_process.stdout.readline() == "writing\n"
        [left] = os.listdir(store.tmp_dir)
        path = os.path.join(store.tmp_dir, left)
        # A file newer than this process is never removed, so date it before the test run began.
        long_ago = time.time() - 365 * 24 * 3600
        os.utime(path, (long_ago, long_ago))

        kept_while_alive = store.remove_stale_tmp()
    finally:
        writer_process.send_signal(signal.SIGKILL)
        writer_process.wait(timeout=30)
        writer_process.stdout.close()

    assert left.startswith(f"blob-{writer_process.pid}-")
    assert kept_while_alive == 0
    assert store.remove_stale_tmp() == 1
    assert os.listdir(store.tmp_dir) == []


def test_stale_tmp_keeps_new_and_unknown_files(store_root):
    store = Store(str(store_root))
    long_ago = time.time() - 365 * 24 * 3600
    new_blob = os.path.join(store.tmp_dir, "blob-1-new")
    other = os.path.join(store.tmp_dir, "sources-old")
    for path in (new_blob, other):
        with open(path, "wb") as file:
            file.write(b"data")
    os.utime(other, (long_ago, long_ago))

    removed = store.remove_stale_tmp()

    assert removed == 0
    assert sorted(os.listdir(store.tmp_dir)) == ["blob-1-new", "sources-old"]
