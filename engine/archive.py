"""Layer tars in and out.

Layers are stored uncompressed (`application/vnd.oci.image.layer.v1.tar`),
so the sha256 of the tar written here is both the layer's digest and its
diff ID. Writing hashes in the same pass, so a layer is never read twice.

Output is reproducible. Each directory comes before its contents, which are
sorted bytewise by name, the order of Go's `filepath.Walk` and so of Docker.
Owners are numeric with empty names, and mtimes are whole seconds,
optionally clamped to SOURCE_DATE_EPOCH. Names are relative with no leading `./`, and directories
end in `/`, as in the layers Docker writes.

Extraction lives in `unpack` and `docker diff` in `changes`; both are
re-exported here so callers import one module for layer tars.
"""

import errno
import hashlib
import logging
import os
import stat
import tarfile
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Iterator

from layerlab.engine.changes import Change, changes
from layerlab.engine.errors import InvalidArgumentError, NotFoundError
from layerlab.engine.unpack import apply_layer, extract_layer
from layerlab.engine.whiteout import (
    METACOPY_XATTRS,
    OPAQUE_MARKER,
    REDIRECT_XATTRS,
    WHITEOUT_PREFIX,
    is_opaque_dir,
    is_overlay_whiteout,
    is_overlay_xattr,
)

__all__ = [
    "Change",
    "HashingWriter",
    "LayerInfo",
    "apply_layer",
    "changes",
    "extract_layer",
    "tar_directory",
    "tar_path",
    "write_changes",
    "write_layer",
]

logger = logging.getLogger(__name__)

COPY_BUFFER_SIZE = 1 << 20


@dataclass(frozen=True)
class LayerInfo:
    """Digest (`sha256:<hex>`) and size in bytes of a written layer tar."""

    digest: str
    size: int


class HashingWriter:
    """A write-only file object that hashes with sha256 what it passes on to `fileobj`."""

    def __init__(self, fileobj: BinaryIO):
        self._fileobj = fileobj
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self._hash.update(data)
        self._fileobj.write(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        # tarfile only uses offsets relative to the first tell(), so the byte count works.
        return self.size

    def flush(self) -> None:
        self._fileobj.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def write_layer(upper_dir: str, fileobj: BinaryIO, *, source_date_epoch: int | None = None) -> LayerInfo:
    """Write the tree under `upper_dir` to `fileobj` as an OCI layer tar.

    overlayfs whiteouts become OCI whiteouts: a character device 0/0 `x`
    becomes an empty file `.wh.x`, and an opaque directory gets a
    `.wh..wh..opq` entry right after its own. overlayfs xattrs are dropped.
    Raises InvalidArgumentError for an upper dir written with redirect_dir
    or metacopy, whose content is partly in the lower layers.
    """
    _require_directory(upper_dir)
    writer = _TarWriter(fileobj, source_date_epoch=source_date_epoch, overlay=True)
    for name, path, st in _walk_sorted(upper_dir):
        writer.add(name, path, st)
    return writer.close()


def write_changes(
    root_dir: str,
    change_list: Iterable[Change],
    fileobj: BinaryIO,
    *,
    source_date_epoch: int | None = None,
) -> LayerInfo:
    """Write a layer tar from a list of changes, reading added and changed paths under `root_dir`.

    `root_dir` is the merged view (a container's root). Each `A` or `C`
    path adds its own entry only, so a new directory's contents must be
    listed as changes too, as `changes()` does. Each `D` path becomes a
    `.wh.` whiteout owned by root with mode 0600.
    """
    _require_directory(root_dir)
    writer = _TarWriter(fileobj, source_date_epoch=source_date_epoch, overlay=False)
    ordered = sorted(change_list, key=lambda change: _sort_key(change.path))

    for change in ordered:
        name = change.path.strip("/")
        if not name:
            continue
        if change.kind == "D":
            writer.add_deletion(name)
            continue

        path = os.path.join(root_dir, name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise NotFoundError(
                f"changed path {change.path} not found under {root_dir}: "
                "list changes again from the current root"
            ) from None
        writer.add(name, path, st)

    return writer.close()


def tar_directory(
    src_dir: str,
    fileobj: BinaryIO,
    *,
    owner: tuple[int, int] | None = None,
    source_date_epoch: int | None = None,
) -> LayerInfo:
    """Write the tree under `src_dir` to `fileobj` as a plain tar, with no whiteout conversion.

    `owner` as `(uid, gid)` replaces every entry's owner, as a build context
    sent to a builder does not carry the client's uids.
    """
    _require_directory(src_dir)
    writer = _TarWriter(fileobj, source_date_epoch=source_date_epoch, overlay=False, owner=owner)
    for name, path, st in _walk_sorted(src_dir):
        writer.add(name, path, st)
    return writer.close()


def tar_path(
    path: str,
    name: str,
    fileobj: BinaryIO,
    *,
    owner: tuple[int, int] | None = None,
) -> LayerInfo:
    """Write `path` (any file type; a directory with its tree) to `fileobj` as a tar whose top entry is `name`.

    A symlink at `path` is stored as a link, not followed, as `docker cp`
    does. `owner` as `(uid, gid)` replaces every entry's owner.
    """
    st = os.lstat(path)
    writer = _TarWriter(fileobj, source_date_epoch=None, overlay=False, owner=owner)
    writer.add(name, path, st)
    if stat.S_ISDIR(st.st_mode):
        for child_name, child_path, child_st in _walk_sorted(path):
            writer.add(f"{name}/{child_name}", child_path, child_st)
    return writer.close()


class _TarWriter:
    """Adds entries to a PAX tar while hashing it, tracking hardlinks by inode."""

    def __init__(self, fileobj, *, source_date_epoch, overlay, owner=None):
        self._hashing = HashingWriter(fileobj)
        self._tar = tarfile.TarFile(
            fileobj=self._hashing,
            mode="w",
            format=tarfile.PAX_FORMAT,
            encoding="utf-8",
            errors="surrogateescape",
        )
        self._tar.copybufsize = COPY_BUFFER_SIZE
        self._epoch = source_date_epoch
        self._overlay = overlay
        self._owner = owner
        self._first_names: dict[tuple[int, int], str] = {}

    def add(self, name: str, path: str, st: os.stat_result) -> None:
        if self._overlay and is_overlay_whiteout(st):
            self._add_empty_file(_whiteout_name(name), st, mode=0o600)
            return

        info = self._header(name, st)
        if not self._fill_type(info, path, st):
            return
        info.pax_headers = self._xattr_headers(path)
        self._add_with_data(info, path)

        if self._overlay and info.type == tarfile.DIRTYPE and is_opaque_dir(path):
            self._add_empty_file(f"{name}/{OPAQUE_MARKER}", st, mode=stat.S_IMODE(st.st_mode) & 0o777)

    def add_deletion(self, name: str) -> None:
        info = tarfile.TarInfo(_whiteout_name(name))
        info.mode = 0o600
        info.mtime = self._epoch or 0
        self._tar.addfile(info)

    def close(self) -> LayerInfo:
        # End with two zero blocks and no padding to tarfile's 10 KiB record, as Go's archive/tar
        # (and so Docker) does: an empty layer is then the well-known 1024-byte tar.
        self._hashing.write(tarfile.NUL * (tarfile.BLOCKSIZE * 2))
        self._tar.closed = True
        self._hashing.flush()
        return LayerInfo(digest=self._hashing.digest, size=self._hashing.size)

    def _header(self, name: str, st: os.stat_result) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = self._owner or (st.st_uid, st.st_gid)
        info.uname = info.gname = ""
        info.mtime = self._clamp(int(st.st_mtime))
        return info

    def _clamp(self, mtime: int) -> int:
        if self._epoch is not None and mtime > self._epoch:
            return self._epoch
        return mtime

    def _fill_type(self, info: tarfile.TarInfo, path: str, st: os.stat_result) -> bool:
        """Set the entry's type fields. Returns False for a file type tar cannot hold."""
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
            return True

        if st.st_nlink > 1 and self._link_to_earlier(info, st):
            return True

        if stat.S_ISREG(mode):
            info.type = tarfile.REGTYPE
            info.size = st.st_size
        elif stat.S_ISLNK(mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(path)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor = os.major(st.st_rdev)
            info.devminor = os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        else:
            # Sockets are recreated by the programs that own them, and Docker skips them too.
            logger.debug("skipping socket or unknown file type %o at %s", stat.S_IFMT(mode), path)
            return False
        return True

    def _link_to_earlier(self, info: tarfile.TarInfo, st: os.stat_result) -> bool:
        key = (st.st_dev, st.st_ino)
        first = self._first_names.get(key)
        if first is None:
            self._first_names[key] = info.name
            return False
        info.type = tarfile.LNKTYPE
        info.linkname = first
        return True

    def _xattr_headers(self, path: str) -> dict[str, str]:
        try:
            names = os.listxattr(path, follow_symlinks=False)
        except OSError as error:
            if error.errno in (errno.ENOTSUP, errno.EPERM):
                return {}
            raise

        headers = {}
        for xattr in sorted(names):
            if xattr in REDIRECT_XATTRS or xattr in METACOPY_XATTRS:
                raise InvalidArgumentError(
                    f"{path} has the overlayfs xattr {xattr}, so its content is partly in a "
                    "lower layer: mount the overlay with redirect_dir=off,metacopy=off"
                )
            if is_overlay_xattr(xattr):
                continue
            value = os.getxattr(path, xattr, follow_symlinks=False)
            # surrogateescape keeps binary values (security.capability) byte for byte.
            # NOTE: tarfile then adds hdrcharset=BINARY, which GNU tar 1.34 lists with a warning.
            headers["SCHILY.xattr." + xattr] = value.decode("utf-8", "surrogateescape")
        return headers

    def _add_with_data(self, info: tarfile.TarInfo, path: str) -> None:
        if info.type != tarfile.REGTYPE or info.size == 0:
            self._tar.addfile(info)
            return
        with open(path, "rb") as data:
            self._tar.addfile(info, data)

    def _add_empty_file(self, name: str, st: os.stat_result, *, mode: int) -> None:
        info = self._header(name, st)
        info.type = tarfile.REGTYPE
        info.mode = mode
        self._tar.addfile(info)


def _whiteout_name(name: str) -> str:
    parent, _, base = name.rpartition("/")
    whiteout = WHITEOUT_PREFIX + base
    return f"{parent}/{whiteout}" if parent else whiteout


def _sort_key(path: str) -> list[bytes]:
    return [os.fsencode(part) for part in path.strip("/").split("/")]


def _require_directory(path: str) -> None:
    if not os.path.isdir(path):
        raise NotFoundError(f"directory {path} not found: give an existing directory to archive")


def _walk_sorted(top: str) -> Iterator[tuple[str, str, os.stat_result]]:
    """Yield `(name, path, lstat)` below `top`, each directory before its sorted contents.

    An explicit stack keeps deep trees clear of Python's recursion limit.
    """
    stack = [iter(_sorted_entries(top, ""))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue

        name, path, st = entry
        yield entry
        if stat.S_ISDIR(st.st_mode):
            stack.append(iter(_sorted_entries(path, name)))


def _sorted_entries(directory: str, prefix: str) -> list[tuple[str, str, os.stat_result]]:
    with os.scandir(directory) as scan:
        entries = sorted(scan, key=lambda entry: os.fsencode(entry.name))
    result = []
    for entry in entries:
        name = f"{prefix}/{entry.name}" if prefix else entry.name
        result.append((name, entry.path, entry.stat(follow_symlinks=False)))
    return result
