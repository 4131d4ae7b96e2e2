"""`export` (a container's merged file system as one flat tar) and `import` (a tar as a one-layer image)."""

from __future__ import annotations

import bz2
import gzip
import logging
import lzma
import os
import tarfile

from layerlab.engine.archive import tar_directory
from layerlab.engine.config_changes import apply_changes, parse_changes
from layerlab.engine.container_fs import call_in_root
from layerlab.engine.errors import InvalidArgumentError
from layerlab.engine.image import Image, ImageDraft, write_image
from layerlab.engine.reference import Reference

log = logging.getLogger(__name__)

COPY_BUFFER_SIZE = 1 << 20

_MAGIC = ((b"\x1f\x8b", gzip.GzipFile), (b"BZh", bz2.BZ2File), (b"\xfd7zXZ\x00", lzma.LZMAFile))


def export_container(engine, record, fd: int) -> None:
    """Write the container's file system, with its changes and without volumes or /proc, as a tar to `fd`."""

    def write(root):
        with os.fdopen(os.dup(fd), "wb", buffering=COPY_BUFFER_SIZE) as out:
            tar_directory(root, out)

    call_in_root(engine, record, write, submounts=False)


def import_image(engine, source, reference: str | None, *, changes: list[str] = (), message: str = "") -> Image:
    """Store the tar read from the binary file `source` (plain, gzip, bzip2 or xz) as a one-layer image.

    The history entry reads `Imported from -` unless `message` is given, as
    in Docker, whose CLI always sends the file as a stream.
    """
    parsed_changes = parse_changes(list(changes))
    target = Reference.parse(reference) if reference else None

    stream = _decompressed(source)
    with engine.store.gc_shared():
        with engine.store.blob_writer() as writer:
            size = _copy_checking_tar(stream, writer)
            digest = writer.commit()

        draft = ImageDraft.empty()
        draft.settings.clear()
        apply_changes(draft.settings, parsed_changes)
        draft.add_layer(digest, size)
        draft.add_history("", empty_layer=False, comment=message or "Imported from -")
        image = write_image(engine.store, draft)
        if target is not None:
            engine.images.tag(image, target)
        else:
            engine.images.add_untagged(image)
    log.info("imported %d bytes as image %s", size, image.id)
    return image


def _decompressed(source):
    head = source.peek(8)[:8] if hasattr(source, "peek") else b""
    for magic, opener in _MAGIC:
        if head.startswith(magic):
            return opener(source)
    return source


def _copy_checking_tar(stream, writer) -> int:
    first = stream.read(tarfile.BLOCKSIZE)
    if len(first) < tarfile.BLOCKSIZE:
        raise InvalidArgumentError("the input is not a tar archive: it is shorter than one tar block")
    if first.strip(b"\0"):
        try:
            tarfile.TarInfo.frombuf(first, "utf-8", "surrogateescape")
        except tarfile.HeaderError as error:
            raise InvalidArgumentError(f"the input is not a tar archive ({error}): give a tar, .tar.gz, "
                                       ".tar.bz2 or .tar.xz file") from None
    writer.write(first)
    size = len(first)
    while chunk := stream.read(COPY_BUFFER_SIZE):
        writer.write(chunk)
        size += len(chunk)
    return size
