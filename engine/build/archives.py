"""ADD's local archives: recognised by content, not by name, and unpacked safely.

Docker's ADD unpacks a local file when it is a tar, plain or compressed with
gzip, bzip2 or xz, whatever the file is called; any other file is copied.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import tarfile

from layerlab.engine.unpack import apply_layer

SNIFF_BYTES = 512

# Magic numbers of the compressions that Docker's archive package detects.
_DECOMPRESSORS = (
    (b"\x1f\x8b\x08", gzip.open),
    (b"BZh", bz2.open),
    (b"\xfd7zXZ\x00", lzma.open),
)


def _opener(head: bytes):
    for magic, opener in _DECOMPRESSORS:
        if head.startswith(magic):
            return opener
    return None


def _is_tar_header(block: bytes) -> bool:
    if len(block) < SNIFF_BYTES:
        return False
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def is_archive(context_fd: int, relpath: str) -> bool:
    """Return whether the file is a tar archive, possibly compressed."""
    fd = os.open(relpath, os.O_RDONLY | os.O_CLOEXEC, dir_fd=context_fd)
    with open(fd, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
        opener = _opener(head)
        if opener is None:
            return _is_tar_header(head)
        handle.seek(0)
        try:
            with opener(handle) as stream:
                return _is_tar_header(stream.read(SNIFF_BYTES))
        except (OSError, EOFError, lzma.LZMAError):
            return False


def extract(context_fd: int, relpath: str, dest: str) -> None:
    """Unpack the archive into the directory `dest`, resolving every member path inside it."""
    fd = os.open(relpath, os.O_RDONLY | os.O_CLOEXEC, dir_fd=context_fd)
    with open(fd, "rb") as handle:
        opener = _opener(handle.read(SNIFF_BYTES))
        handle.seek(0)
        if opener is None:
            apply_layer(handle, dest)
            return
        # The members are read in order, so the decompressor only ever seeks forwards.
        with opener(handle) as stream:
            apply_layer(stream, dest)
