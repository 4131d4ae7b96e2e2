"""The image store: an OCI image layout directory.

Blobs live under `blobs/sha256/<hex>`. `index.json` lists one manifest
descriptor per tag (`org.opencontainers.image.ref.name`), per build-cache
entry (`dev.layerlab.cache.key`) and per image that lost its tag
(`dev.layerlab.untagged`). Only tags carry a reference name, so skopeo, umoci
and podman can read the store as it is. Every descriptor also carries the image ID and the parent image's ID
as annotations, so listing images never opens a manifest.

Writes are crash-safe: a blob is written to `tmp/`, hashed while written,
fsynced and renamed into place, and `index.json` is rewritten the same way
under an exclusive fcntl lock, so two notebooks can share one store.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from layerlab.engine.digest import check_digest, hex_part
from layerlab.engine.errors import InvalidArgumentError, NotFoundError
from layerlab.engine.locking import exclusive_lock_waiting, file_lock, try_exclusive_lock

log = logging.getLogger(__name__)

MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_LAYER = "application/vnd.oci.image.layer.v1.tar"

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CACHE_KEY = "dev.layerlab.cache.key"
ANNOTATION_UNTAGGED = "dev.layerlab.untagged"
ANNOTATION_IMAGE_ID = "dev.layerlab.image.id"
ANNOTATION_PARENT = "dev.layerlab.parent"
ANNOTATION_CREATED = "org.opencontainers.image.created"

COPY_BUFFER = 1 << 20

# Prefixes of the temporary files in tmp/ that their writer keeps flock(2)-locked while it writes.
# An unlocked file with one of these prefixes belongs to a writer that died.
LOCKED_TMP_PREFIXES = ("blob-", "load-")

# The gc.lock paths that this process holds exclusively. flock(2) locks
# belong to open files, so a shared lock taken on a second descriptor by
# the process that holds the exclusive one would wait for itself.
_exclusive_gc_locks: set[str] = set()


@dataclass
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and its size."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        doc = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return doc

    @classmethod
    def from_json(cls, doc: dict) -> Descriptor:
        return cls(doc["mediaType"], doc["digest"], doc["size"], dict(doc.get("annotations") or {}))


class BlobWriter:
    """A blob being written: hashed as it is written, published on `commit`.

    Use it as a context manager; leaving the block without `commit` (an
    error, Ctrl-C) deletes the temporary file, so no partial blob ever
    appears under a digest.
    """

    def __init__(self, store: Store, *, hashed_by_caller: bool = False):
        self._store = store
        # Garbage collection must not delete the temporary file while it is written.
        self._gc_lock = store.gc_shared()
        self._gc_lock.__enter__()
        try:
            fd, self._tmp_path = tempfile.mkstemp(prefix=f"blob-{os.getpid()}-", dir=store.tmp_dir)
            # The kernel releases this lock when the process dies, so `remove_stale_tmp` can then delete the file.
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            self._gc_lock.__exit__(None, None, None)
            raise
        self._file = os.fdopen(fd, "wb", buffering=COPY_BUFFER)
        # A caller that hashes the stream itself (the layer writer) passes the digest to commit, so a layer is hashed once.
        self._hash = None if hashed_by_caller else hashlib.sha256()
        self.size = 0
        self.digest: str | None = None

    def write(self, data) -> int:
        self._file.write(data)
        if self._hash is not None:
            self._hash.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self._file.flush()

    def commit(self, expected_digest: str | None = None, expected_size: int | None = None) -> str:
        """Verify and publish the blob; return its digest."""
        if self._hash is None:
            if expected_digest is None:
                raise ValueError("a blob hashed by its caller needs the digest at commit")
            digest = check_digest(expected_digest)
        else:
            digest = "sha256:" + self._hash.hexdigest()
        if expected_digest is not None and digest != expected_digest:
            raise InvalidArgumentError(f"blob digest mismatch: expected {expected_digest}, got {digest}")
        if expected_size is not None and self.size != expected_size:
            raise InvalidArgumentError(
                f"blob {digest} size mismatch: expected {expected_size} bytes, got {self.size}"
            )

        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.rename(self._tmp_path, self._store.blob_path(digest))
        self._store.sync_blob_dir()
        self.digest = digest
        return digest

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        if self.digest is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp_path)
        self._gc_lock.__exit__(None, None, None)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Store:
    """An OCI image layout with layerlab's annotations; see the module doc."""

    def __init__(self, root: str):
        self.root = root
        self.blob_dir = os.path.join(root, "blobs", "sha256")
        self.tmp_dir = os.path.join(root, "tmp")
        self.lock_dir = os.path.join(root, "locks")
        self.index_path = os.path.join(root, "index.json")
        self._ensure_layout()

    def _ensure_layout(self) -> None:
        for path in (self.blob_dir, self.tmp_dir, self.lock_dir):
            os.makedirs(path, exist_ok=True)
        layout = os.path.join(self.root, "oci-layout")
        if not os.path.exists(layout):
            _write_atomically(layout, b'{"imageLayoutVersion":"1.0.0"}', self.tmp_dir)
        if not os.path.exists(self.index_path):
            with file_lock(self._index_lock):
                if not os.path.exists(self.index_path):
                    self._write_index([])

    # Blobs

    def blob_path(self, digest: str) -> str:
        return os.path.join(self.blob_dir, hex_part(digest))

    def has_blob(self, digest: str) -> bool:
        return os.path.exists(self.blob_path(digest))

    def blob_writer(self, *, hashed_by_caller: bool = False) -> BlobWriter:
        return BlobWriter(self, hashed_by_caller=hashed_by_caller)

    def put_blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if self.has_blob(digest):
            return digest
        with self.blob_writer() as writer:
            writer.write(data)
            return writer.commit()

    def put_json(self, doc: dict) -> tuple[str, int]:
        """Store `doc` as canonical JSON (sorted keys, no spaces); return digest and size."""
        data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        return self.put_blob(data), len(data)

    def read_blob(self, digest: str) -> bytes:
        try:
            with open(self.blob_path(check_digest(digest)), "rb") as blob:
                return blob.read()
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest} not found in the store {self.root}: run `layerlab fsck`") from None

    def read_json(self, digest: str) -> dict:
        return json.loads(self.read_blob(digest))

    def open_blob(self, digest: str):
        try:
            return open(self.blob_path(check_digest(digest)), "rb")
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest} not found in the store {self.root}: run `layerlab fsck`") from None

    def sync_blob_dir(self) -> None:
        fd = os.open(self.blob_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def iter_blobs(self) -> Iterator[str]:
        for name in os.listdir(self.blob_dir):
            yield f"sha256:{name}"

    def remove_stale_tmp(self) -> int:
        """Delete the temporary files in tmp/ that writers killed before they finished left; return how many.

        Only files named with a `LOCKED_TMP_PREFIXES` prefix count, and only
        when they are older than this process and no process holds their
        lock. A live writer keeps its file locked, so the file stays. The caller
        holds `gc_shared` (or `gc_exclusive`), so prune does not run at once.
        """
        started = _process_start_time()
        removed = 0
        for name in os.listdir(self.tmp_dir):
            if not name.startswith(LOCKED_TMP_PREFIXES):
                continue
            path = os.path.join(self.tmp_dir, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode) or info.st_mtime >= started:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    removed += 1
                    log.info("removed %s, which an interrupted write left (%d bytes)", path, info.st_size)
            finally:
                os.close(fd)
        return removed

    # Garbage collection

    @property
    def gc_lock_path(self) -> str:
        return os.path.join(self.lock_dir, "gc.lock")

    @contextlib.contextmanager
    def gc_shared(self):
        """Keep garbage collection away while blobs, snapshots or files in tmp/ are made.

        Hold it from the first blob written to the index update that names
        the last one, because a blob no descriptor reaches yet looks like
        garbage. A process that holds `gc_exclusive` passes through.
        """
        if self.gc_lock_path in _exclusive_gc_locks:
            yield
            return
        with file_lock(self.gc_lock_path, shared=True):
            yield

    @contextlib.contextmanager
    def gc_exclusive(self, on_wait: Callable[[], None] | None = None):
        """Hold the store for garbage collection, waiting for every holder of `gc_shared` to finish.

        Calls `on_wait()` once when the wait takes more than a second.
        """
        with exclusive_lock_waiting(self.gc_lock_path, on_wait):
            _exclusive_gc_locks.add(self.gc_lock_path)
            try:
                yield
            finally:
                _exclusive_gc_locks.discard(self.gc_lock_path)

    @contextlib.contextmanager
    def try_gc_exclusive(self):
        """Yield True while holding the store for garbage collection, or False at once when an operation holds it."""
        if self.gc_lock_path in _exclusive_gc_locks:
            yield True
            return
        with try_exclusive_lock(self.gc_lock_path) as locked:
            if locked:
                _exclusive_gc_locks.add(self.gc_lock_path)
            try:
                yield locked
            finally:
                if locked:
                    _exclusive_gc_locks.discard(self.gc_lock_path)

    # index.json

    @property
    def _index_lock(self) -> str:
        return os.path.join(self.lock_dir, "index.lock")

    def descriptors(self) -> list[Descriptor]:
        """Read `index.json` as it is now (a consistent snapshot, no lock needed)."""
        with open(self.index_path, "rb") as index:
            doc = json.load(index)
        return [Descriptor.from_json(entry) for entry in doc.get("manifests", [])]

    def update_index(self, change: Callable[[list[Descriptor]], list[Descriptor] | None]) -> list[Descriptor]:
        """Apply `change` to the descriptors under the lock and publish the result atomically."""
        with file_lock(self._index_lock):
            descriptors = self.descriptors()
            result = change(descriptors)
            if result is not None:
                descriptors = result
            self._write_index(descriptors)
            return descriptors

    def _write_index(self, descriptors: list[Descriptor]) -> None:
        doc = {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": [d.to_json() for d in descriptors],
        }
        _write_atomically(self.index_path, json.dumps(doc, indent=1).encode(), self.tmp_dir)


def _process_start_time() -> float:
    """Return when this process started, in seconds since the epoch, from /proc."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat_file:
            # Field 22 (starttime) counts clock ticks since boot. The command name in
            # brackets may contain spaces, so count the fields after its ")".
            fields = stat_file.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])
        with open("/proc/stat", encoding="ascii") as system_stat:
            boot_time = next(int(line.split()[1]) for line in system_stat if line.startswith("btime "))
        return boot_time + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORT_TIME


_IMPORT_TIME = time.time()


def _write_atomically(path: str, data: bytes, tmp_dir: str) -> None:
    fd, tmp_path = tempfile.mkstemp(prefix=".write-", dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.rename(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)
        raise

    dir_fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)

