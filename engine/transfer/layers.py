"""Layer blobs coming into the store: decompressed while read, checked twice.

The store keeps every layer uncompressed, so a layer's digest is its diff ID
and snapshots, `history` and the build cache never care how an image
arrived. A gzip or zstd layer from a registry or an archive is therefore
decompressed while it streams in. Two checks guard it: the bytes as they
arrive must match the descriptor's digest and size (the compressed digest
that the manifest names), and the decompressed bytes must match the diff ID
from the image config. The blob is published only when both hold, through
`BlobWriter.commit`, so a wrong or truncated layer leaves nothing under any
digest.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zlib
from collections.abc import Callable
from typing import BinaryIO

from layerlab.engine.errors import InvalidArgumentError, LayerlabError
from layerlab.engine.store import MEDIA_TYPE_LAYER, Descriptor, Store

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class BlobMismatchError(LayerlabError):
    """Content whose digest or size differs from what its descriptor promised."""


def compression_of(media_type: str, head: bytes = b"") -> str:
    """Return "gzip", "zstd" or "none" for a layer, from its media type and else its first bytes."""
    if media_type.endswith("+gzip") or media_type.endswith(".tar.gzip"):
        return "gzip"
    if media_type.endswith("+zstd"):
        return "zstd"
    if media_type.endswith(".tar") or media_type.endswith("+tar"):
        return "none"
    # Unknown media types (and docker-archive layers, which have none) are recognised by their magic bytes.
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


class _Decompressor:
    """A streaming decompressor with one interface for gzip, zstd and plain tar."""

    def __init__(self, compression: str):
        self.compression = compression
        if compression == "gzip":
            # 16 + MAX_WBITS: expect a gzip header and trailer. Multi-member gzip is handled in `feed`.
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif compression == "zstd":
            try:
                import zstandard
            except ImportError:
                raise LayerlabError(
                    "this layer is zstd-compressed and the Python module `zstandard` is not installed: "
                    "run `pip install zstandard`"
                ) from None
            self._zstd_decompressor = zstandard.ZstdDecompressor()
            self._zstd = self._zstd_decompressor.decompressobj()
        elif compression != "none":
            raise InvalidArgumentError(f"unknown layer compression {compression!r}: expected gzip, zstd or none")

    def feed(self, data: bytes) -> bytes:
        try:
            return self._feed(data)
        except zlib.error as error:
            raise BlobMismatchError(f"layer is not valid gzip: {error}") from None
        except Exception as error:
            if type(error).__name__ == "ZstdError":
                raise BlobMismatchError(f"layer is not valid zstd: {error}") from None
            raise

    def _feed(self, data: bytes) -> bytes:
        if self.compression == "none":
            return data
        if self.compression == "zstd":
            return self._feed_zstd(data)
        output = [self._zlib.decompress(data)]
        # A gzip file may hold several members one after another (pigz, concatenated streams).
        while self._zlib.eof and self._zlib.unused_data:
            rest = self._zlib.unused_data
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
            output.append(self._zlib.decompress(rest))
        return b"".join(output)

    def _feed_zstd(self, data: bytes) -> bytes:
        # A zstd stream may hold several frames (concatenated `zstd` output,
        # or zstd:chunked with its skippable metadata frames). One
        # decompressobj stops at the end of its frame, keeps the bytes after
        # it in `unused_data` and raises on further input, so each frame gets a new one.
        if self._zstd.eof:
            self._zstd = self._zstd_decompressor.decompressobj()
        output = [self._zstd.decompress(data)]
        while self._zstd.eof and self._zstd.unused_data:
            rest = self._zstd.unused_data
            self._zstd = self._zstd_decompressor.decompressobj()
            output.append(self._zstd.decompress(rest))
        return b"".join(output)

    def finish(self) -> bytes:
        if self.compression == "gzip":
            tail = self._zlib.flush()
            if not self._zlib.eof:
                raise BlobMismatchError("gzip stream ended early: the layer is truncated")
            return tail
        if self.compression == "zstd" and not self._zstd.eof:
            raise BlobMismatchError("zstd stream ended early: the layer is truncated")
        return b""


def store_layer(
    store: Store,
    source: BinaryIO,
    *,
    media_type: str,
    diff_id: str,
    expected_digest: str | None = None,
    expected_size: int | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> Descriptor:
    """Read one layer from `source`, store it uncompressed, and return its descriptor in the store.

    `expected_digest` and `expected_size` describe the bytes as they arrive
    (None where the source has no descriptor, as in docker-archive files).
    The stored blob's digest is `diff_id`, or nothing is stored.
    """
    if store.has_blob(diff_id):
        return Descriptor(MEDIA_TYPE_LAYER, diff_id, _blob_size(store, diff_id))

    head = source.read(CHUNK_SIZE)
    decompressor = _Decompressor(compression_of(media_type, head))
    arrived = hashlib.sha256()
    arrived_size = 0
    broken: BlobMismatchError | None = None
    with store.blob_writer() as writer:
        chunk = head
        while chunk:
            arrived.update(chunk)
            arrived_size += len(chunk)
            if expected_size is not None and arrived_size > expected_size:
                raise BlobMismatchError(
                    f"layer {expected_digest} is larger than the {expected_size} bytes its descriptor gives"
                )
            if broken is None:
                try:
                    writer.write(decompressor.feed(chunk))
                except BlobMismatchError as error:
                    # Keep hashing: a digest mismatch explains corrupt data better than the decompressor.
                    broken = error
            if on_bytes is not None:
                on_bytes(len(chunk))
            chunk = source.read(CHUNK_SIZE)

        if expected_size is not None and arrived_size != expected_size:
            raise BlobMismatchError(
                f"layer {expected_digest} is truncated: got {arrived_size} of {expected_size} bytes"
            )
        arrived_digest = "sha256:" + arrived.hexdigest()
        if expected_digest is not None and arrived_digest != expected_digest:
            raise BlobMismatchError(f"layer digest mismatch: expected {expected_digest}, got {arrived_digest}")
        if broken is not None:
            raise broken
        writer.write(decompressor.finish())

        try:
            digest = writer.commit(diff_id)
        except InvalidArgumentError as error:
            raise BlobMismatchError(
                f"layer {expected_digest or arrived_digest} does not decompress to its diff ID: {error}"
            ) from None
        size = writer.size
    log.debug("stored layer %s (%d bytes) from %s", digest, size, expected_digest or arrived_digest)
    return Descriptor(MEDIA_TYPE_LAYER, digest, size)


def store_checked_bytes(store: Store, data: bytes, expected_digest: str, expected_size: int | None = None) -> str:
    """Store a small blob (a config or a manifest) after checking its digest and size."""
    if store.has_blob(expected_digest):
        return expected_digest
    with store.blob_writer() as writer:
        writer.write(data)
        try:
            return writer.commit(expected_digest, expected_size)
        except InvalidArgumentError as error:
            raise BlobMismatchError(str(error)) from None


def check_bytes(data: bytes, expected_digest: str, expected_size: int | None = None, kind: str = "blob") -> None:
    """Raise BlobMismatchError unless `data` has the given digest and size."""
    if expected_size is not None and len(data) != expected_size:
        raise BlobMismatchError(f"{kind} {expected_digest}: expected {expected_size} bytes, got {len(data)}")
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != expected_digest:
        raise BlobMismatchError(f"{kind} digest mismatch: expected {expected_digest}, got {actual}")


def _blob_size(store: Store, digest: str) -> int:
    return os.path.getsize(store.blob_path(digest))
