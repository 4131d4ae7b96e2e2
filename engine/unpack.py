"""Unpack layer tars safely, member by member.

`extract_layer` fills an empty snapshot directory and turns OCI whiteouts
into overlayfs ones. `apply_layer` applies a layer onto a flattened root
(whiteouts delete), for `export` and tests.

tarfile's `extractall` and its extraction filters are not used: the filters
in Python 3.11.7 have escapes that later patch releases fixed. Every member
path is resolved inside the root by `rootpath`, a member never writes
through a symlink in its own last component, and ownership, mode, xattrs
and times are set on the entry that was just created.
"""

import errno
import logging
import os
import shutil
import stat
import tarfile
from decimal import Decimal
from typing import BinaryIO

from layerlab.engine.errors import InvalidArgumentError, LayerlabError, NotFoundError
from layerlab.engine.rootpath import (
    ensure_directory,
    is_lexically_unsafe,
    resolve_in_root,
    resolve_parent,
    split_clean,
)
from layerlab.engine.whiteout import (
    AUFS_META_PREFIX,
    OPAQUE_MARKER,
    WHITEOUT_PREFIX,
    is_overlay_xattr,
    make_overlay_whiteout,
    set_opaque,
    whiteout_target,
)

logger = logging.getLogger(__name__)

COPY_BUFFER_SIZE = 1 << 20
XATTR_PAX_PREFIX = "SCHILY.xattr."

# Errors that mean "this host or user cannot set that attribute", not a broken layer.
UNSUPPORTED_ERRNOS = (errno.EPERM, errno.ENOTSUP, errno.EACCES)


def extract_layer(fileobj: BinaryIO, dest_dir: str, *, userns: bool = False) -> None:
    """Unpack the layer tar in `fileobj` into the empty snapshot directory `dest_dir`.

    `.wh.x` becomes a character device 0/0 `x`, and `.wh..wh..opq` sets the
    opaque xattr on its directory: `trusted.overlay.opaque`, or
    `user.overlay.opaque` when `userns` is True because the overlay will be
    mounted with `userxattr`.
    """
    _Unpacker(dest_dir, overlay=True, userns=userns).run(fileobj)


def apply_layer(fileobj: BinaryIO, rootfs_dir: str) -> None:
    """Apply the layer tar in `fileobj` onto the flattened root `rootfs_dir`.

    `.wh.x` deletes `x`, and `.wh..wh..opq` deletes every entry of its
    directory that this layer did not itself add.
    """
    _Unpacker(rootfs_dir, overlay=False, userns=False).run(fileobj)


class _Unpacker:
    def __init__(self, root: str, *, overlay: bool, userns: bool):
        if not os.path.isdir(root):
            raise NotFoundError(f"directory {root} not found: create it before unpacking a layer into it")
        self._root = os.path.realpath(root)
        self._overlay = overlay
        self._userns = userns
        # Resolved parent directories by member components. Only creating a
        # symlink or removing an entry can change a resolution, so both clear it.
        self._parents: dict[tuple[str, ...], str] = {}
        # Directory path -> (dev, ino, mode, mtime_ns), applied after their contents.
        self._directories: dict[str, tuple[int, int, int, int]] = {}
        # Host paths this layer wrote, with their ancestors, for opaque markers in apply mode.
        self._written: set[str] = set()
        self._chown_failed = False
        self._xattr_warned: set[str] = set()

    def run(self, fileobj: BinaryIO) -> None:
        # NOTE: header parsing is still tarfile's, and 3.11.7 has the quadratic
        # PAX header regex fixed in 3.11.10 (CVE-2024-6232): a crafted layer can stall it.
        try:
            with tarfile.open(
                fileobj=fileobj,
                mode=_read_mode(fileobj),
                bufsize=COPY_BUFFER_SIZE,
                encoding="utf-8",
                errors="surrogateescape",
            ) as tar:
                for member in tar:
                    self._unpack_member(tar, member)
        except tarfile.TarError as error:
            raise InvalidArgumentError(
                f"invalid layer tar ({error}): check that the blob is an uncompressed tar"
            ) from error

        self._finish_directories()

    def _unpack_member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        if is_lexically_unsafe(member.name):
            logger.warning("layer member %r points outside the root; unpacking it inside %s", member.name, self._root)

        parts = split_clean(member.name)
        if not parts:
            self._unpack_root(member)
            return

        if parts[-1].startswith(WHITEOUT_PREFIX):
            self._apply_whiteout(member, parts)
            return

        parent = self._parent_directory(member, parts[:-1], create=True)
        if parent is None:
            return
        path = os.path.join(parent, parts[-1])

        if member.isdir():
            self._unpack_directory(member, path)
        elif member.isreg():
            self._unpack_file(tar, member, path)
        elif member.issym():
            self._unpack_symlink(member, path)
        elif member.islnk():
            self._unpack_hardlink(member, path)
        elif member.ischr() or member.isblk() or member.isfifo():
            self._unpack_special(member, path)
        else:
            logger.warning("skipping layer member %r: unsupported tar type %r", member.name, member.type)
            return
        self._mark_written(path)

    def _unpack_root(self, member: tarfile.TarInfo) -> None:
        if not member.isdir():
            logger.warning("skipping layer member %r: only a directory can stand for the root", member.name)
            return
        self._unpack_directory(member, self._root)

    def _parent_directory(self, member, parts: list[str], *, create: bool) -> str | None:
        """Return the resolved directory for `parts`, creating it when `create` is True.

        Returns None when a non-directory is in the way (logged) or, without
        `create`, when the directory does not exist.
        """
        key = tuple(parts)
        cached = self._parents.get(key)
        if cached is not None:
            return cached

        path = resolve_in_root(self._root, parts)
        if not create:
            return path if os.path.isdir(path) and not os.path.islink(path) else None
        try:
            ensure_directory(self._root, path)
        except NotADirectoryError:
            logger.warning("skipping layer member %r: a parent of it is not a directory", member.name)
            return None
        self._parents[key] = path
        return path

    def _remove_existing(self, path: str, *, keep_directory: bool) -> bool:
        """Remove the entry at `path` unless it is a directory to keep. Returns True if one is kept."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        if keep_directory and stat.S_ISDIR(st.st_mode):
            return True

        self._parents.clear()
        if stat.S_ISDIR(st.st_mode):
            # rmtree walks by file descriptor and never follows symlinks.
            shutil.rmtree(path)
        else:
            os.unlink(path)
        return False

    def _unpack_directory(self, member, path: str) -> None:
        if not self._remove_existing(path, keep_directory=True):
            # Owner-only until the end, so later members can be written into it
            # even when its final mode is read-only and we are not root.
            os.mkdir(path, 0o700)

        self._set_owner(path, member)
        self._set_xattrs(path, member)
        st = os.lstat(path)
        self._directories.pop(path, None)
        self._directories[path] = (st.st_dev, st.st_ino, member.mode, _mtime_ns(member))

    def _unpack_file(self, tar, member, path: str) -> None:
        self._remove_existing(path, keep_directory=False)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        descriptor = os.open(path, flags, 0o600)

        with open(descriptor, "wb", buffering=COPY_BUFFER_SIZE) as output:
            source = tar.extractfile(member)
            shutil.copyfileobj(source, output, COPY_BUFFER_SIZE)
            output.flush()

            # chown clears setuid bits and file capabilities, so it goes first.
            self._set_owner(output.fileno(), member)
            os.fchmod(output.fileno(), member.mode)
            self._set_xattrs(output.fileno(), member)
            mtime = _mtime_ns(member)
            os.utime(output.fileno(), ns=(mtime, mtime))

    def _unpack_symlink(self, member, path: str) -> None:
        self._remove_existing(path, keep_directory=False)
        # The target is stored as it is: rootpath resolves it inside the root
        # whenever a later member's path goes through it.
        os.symlink(member.linkname, path)
        self._parents.clear()

        self._set_owner(path, member)
        self._set_xattrs(path, member)
        mtime = _mtime_ns(member)
        os.utime(path, ns=(mtime, mtime), follow_symlinks=False)

    def _unpack_hardlink(self, member, path: str) -> None:
        target_parts = split_clean(member.linkname)
        if not target_parts:
            logger.warning("skipping hardlink %r: its target %r is the root", member.name, member.linkname)
            return
        target = resolve_parent(self._root, target_parts)
        if target == path:
            return

        self._remove_existing(path, keep_directory=False)
        try:
            os.link(target, path, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            logger.warning("skipping hardlink %r: its target %r is not in the layer", member.name, member.linkname)
            return
        except PermissionError:
            logger.warning("skipping hardlink %r: its target %r is a directory", member.name, member.linkname)
            return
        # A hardlink to a symlink is a symlink, which can change later resolutions.
        self._parents.clear()

    def _unpack_special(self, member, path: str) -> None:
        self._remove_existing(path, keep_directory=False)
        try:
            if member.isfifo():
                os.mkfifo(path, 0o600)
            else:
                kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
                os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        except PermissionError:
            logger.warning(
                "skipping device %r (%d, %d): creating device nodes needs CAP_MKNOD",
                member.name, member.devmajor, member.devminor,
            )
            return

        self._set_owner(path, member)
        # The entry was created just above by this process, so it is not a symlink.
        os.chmod(path, member.mode)
        self._set_xattrs(path, member)
        mtime = _mtime_ns(member)
        os.utime(path, ns=(mtime, mtime), follow_symlinks=False)

    def _apply_whiteout(self, member, parts: list[str]) -> None:
        base = parts[-1]
        if base == OPAQUE_MARKER:
            self._apply_opaque(member, parts[:-1])
            return
        target = whiteout_target(base)
        if target is None:
            if not base.startswith(AUFS_META_PREFIX):
                logger.warning("skipping layer member %r: a whiteout needs a name after %r", member.name, WHITEOUT_PREFIX)
            return

        parent = self._parent_directory(member, parts[:-1], create=self._overlay)
        if parent is None:
            return
        path = os.path.join(parent, target)
        self._remove_existing(path, keep_directory=False)
        if not self._overlay:
            return

        try:
            make_overlay_whiteout(path)
        except PermissionError as error:
            raise LayerlabError(
                f"cannot create the whiteout device {path} ({error.strerror}): "
                "unprivileged whiteouts need Linux 5.8 or later, or unpack as root"
            ) from error
        self._set_owner(path, member)
        mtime = _mtime_ns(member)
        os.utime(path, ns=(mtime, mtime), follow_symlinks=False)
        self._mark_written(path)

    def _apply_opaque(self, member, parts: list[str]) -> None:
        directory = self._parent_directory(member, parts, create=self._overlay)
        if directory is None:
            return
        if not self._overlay:
            self._remove_unwritten_children(directory)
            return

        try:
            set_opaque(directory, self._userns)
        except PermissionError as error:
            raise LayerlabError(
                f"cannot mark {directory} opaque ({error.strerror}): setting a trusted.* xattr needs "
                "CAP_SYS_ADMIN; unpack with userns=True to use user.overlay.opaque instead"
            ) from error

    def _remove_unwritten_children(self, directory: str) -> None:
        with os.scandir(directory) as scan:
            children = [entry.path for entry in scan]
        for child in children:
            if child not in self._written:
                self._remove_existing(child, keep_directory=False)

    def _mark_written(self, path: str) -> None:
        while path != self._root and path not in self._written:
            self._written.add(path)
            path = os.path.dirname(path)

    def _set_owner(self, target, member) -> None:
        try:
            if isinstance(target, int):
                os.fchown(target, member.uid, member.gid)
            else:
                os.chown(target, member.uid, member.gid, follow_symlinks=False)
        except OSError as error:
            # EPERM without CAP_CHOWN (rootless), EINVAL for an id that the
            # user namespace does not map: the files keep our own owner.
            if error.errno not in (errno.EPERM, errno.EINVAL):
                raise
            if not self._chown_failed:
                # Logged once per layer: every later member would fail the same way.
                logger.warning(
                    "cannot set owner %d:%d of %r while unpacking into %s (%s), so this layer's files "
                    "owned by unmapped ids keep the unpacking user as owner; map more ids with ranges "
                    "in /etc/subuid and /etc/subgid",
                    member.uid, member.gid, member.name, self._root, error.strerror,
                )
                self._chown_failed = True

    def _set_xattrs(self, target, member) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith(XATTR_PAX_PREFIX):
                continue
            name = key[len(XATTR_PAX_PREFIX):]
            if is_overlay_xattr(name):
                self._warn_xattr(name, member, "overlayfs xattrs never come from a layer")
                continue
            data = value.encode("utf-8", "surrogateescape")
            try:
                if isinstance(target, int):
                    os.setxattr(target, name, data)
                else:
                    os.setxattr(target, name, data, follow_symlinks=False)
            except OSError as error:
                if error.errno not in UNSUPPORTED_ERRNOS:
                    raise
                self._warn_xattr(name, member, error.strerror)

    def _warn_xattr(self, name: str, member, reason: str) -> None:
        if name in self._xattr_warned:
            return
        self._xattr_warned.add(name)
        logger.warning("not setting xattr %s (first on %r): %s", name, member.name, reason)

    def _finish_directories(self) -> None:
        """Set directory modes and mtimes, deepest first, after their contents are in place."""
        for path, (device, inode, mode, mtime) in reversed(self._directories.items()):
            try:
                descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as error:
                if error.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    raise
                logger.debug("directory %s was replaced later in the layer; not setting its mode", path)
                continue
            try:
                # A later member may have swapped a parent for a symlink, so only
                # the very directory created earlier gets its mode and time.
                st = os.fstat(descriptor)
                if (st.st_dev, st.st_ino) == (device, inode):
                    os.fchmod(descriptor, mode)
                    os.utime(descriptor, ns=(mtime, mtime))
            finally:
                os.close(descriptor)


def _read_mode(fileobj) -> str:
    # Stream mode copies every block through an extra internal buffer, so a
    # seekable file is read directly. Pipes still work in stream mode.
    seekable = getattr(fileobj, "seekable", None)
    return "r:" if seekable is not None and seekable() else "r|"


def _mtime_ns(member: tarfile.TarInfo) -> int:
    # A PAX mtime may carry a fraction, which a float would round.
    text = member.pax_headers.get("mtime")
    if text is not None:
        try:
            return int(Decimal(text) * 1_000_000_000)
        except ArithmeticError:
            pass
    return int(member.mtime) * 1_000_000_000
