"""File operations on layers and upper dirs, run as the container's root when the engine is rootless.

As an ordinary user, the files of a layer belong to ids in the user
namespace's mapping: container root is the user, and other container ids
are subordinate host ids, which the user can neither chown to nor always
read or delete. So unpacking, writing a layer, `diff` and removal run in a
forked child inside a user namespace with the containers' mapping. There
lchown(2) works for mapped ids, CAP_DAC_OVERRIDE reaches every mapped file,
and stat(2) returns container ids, which are what a layer tar records.

As root, each function calls its `archive` counterpart in this process.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from layerlab.engine.archive import LayerInfo

log = logging.getLogger(__name__)

COPY_BUFFER_SIZE = 1 << 20


def _rootless():
    return os.geteuid() != 0


def _call(fn, while_running=None):
    # Imported here so that a root engine never loads the runtime package for these calls.
    from layerlab.engine.runtime.userns import call_in_user_namespace

    return call_in_user_namespace(fn, while_running=while_running)


def extract_layer_as_root(fileobj: BinaryIO, dest_dir: str, *, userns: bool) -> None:
    """Unpack a layer tar into `dest_dir` with the owners it records, as `archive.extract_layer` does."""
    # The archive module, with tarfile, is imported only by the commands that move layers.
    from layerlab.engine.archive import extract_layer

    if not _rootless():
        extract_layer(fileobj, dest_dir, userns=userns)
        return
    _call(lambda: extract_layer(fileobj, dest_dir, userns=userns))


def write_layer_as_root(upper_dir: str, fileobj: BinaryIO, *, source_date_epoch: int | None = None) -> LayerInfo:
    """Write `upper_dir` as a layer tar to `fileobj`, with owners as the container sees them."""
    from layerlab.engine.archive import write_layer

    if not _rootless():
        return write_layer(upper_dir, fileobj, source_date_epoch=source_date_epoch)

    # The child writes the tar into a pipe and hashes it. This process
    # copies the bytes into `fileobj`, so the layer is hashed once.
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)

    def write_in_child():
        os.close(read_fd)
        with open(write_fd, "wb", buffering=COPY_BUFFER_SIZE) as stream:
            return write_layer(upper_dir, stream, source_date_epoch=source_date_epoch)

    def copy_in_parent():
        os.close(write_fd)
        with open(read_fd, "rb", buffering=0, closefd=False) as stream:
            while chunk := stream.read(COPY_BUFFER_SIZE):
                fileobj.write(chunk)

    try:
        return _call(write_in_child, copy_in_parent)
    finally:
        for fd in (read_fd, write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def changes_as_root(upper_dir: str, lower_dirs: list[str]):
    """Return `archive.changes` for the upper dir, read with the container's ids."""
    from layerlab.engine.archive import changes

    if not _rootless():
        return changes(upper_dir, lower_dirs)
    return _call(lambda: changes(upper_dir, lower_dirs))


def remove_tree(path: str) -> None:
    """Delete the directory tree at `path`, inside the user namespace when the engine is rootless.

    overlayfs leaves its work dir with mode 000, and container processes
    create files owned by subordinate ids, so the ordinary user cannot delete
    either from outside. Errors are logged, not raised, as the callers
    treat a leftover as something `fsck` and `system prune` clean up.
    """
    if not os.path.lexists(path):
        return
    try:
        if _rootless():
            _call(lambda: shutil.rmtree(path))
        else:
            shutil.rmtree(path)
    except Exception as error:  # noqa: BLE001 - removal is best effort, see the docstring
        log.warning("cannot remove %s: %s", path, error)


__all__ = ["changes_as_root", "extract_layer_as_root", "remove_tree", "write_layer_as_root"]
