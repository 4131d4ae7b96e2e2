"""Whiteouts in their two forms: OCI layer tars and overlayfs directories.

An OCI layer marks a deleted path `dir/x` with an empty file `dir/.wh.x`, and
a directory whose lower contents are hidden with `dir/.wh..wh..opq` (OCI
image spec, "Representing Changes"). overlayfs marks a deleted path with a
character device 0/0 of the same name, and an opaque directory with the
xattr `trusted.overlay.opaque=y`, or `user.overlay.opaque=y` when the
overlay is mounted with `userxattr` inside a user namespace.
"""

import errno
import logging
import os
import stat

logger = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"

# Prefix of AUFS bookkeeping entries (`.wh..wh.plnk`, `.wh..wh.aufs`), which
# carry no change and are skipped on extraction, as Docker does.
AUFS_META_PREFIX = ".wh..wh."

TRUSTED_OPAQUE_XATTR = "trusted.overlay.opaque"
USER_OPAQUE_XATTR = "user.overlay.opaque"

# overlayfs keeps its own bookkeeping in these namespaces. They describe one
# particular mount and never belong in a layer tar.
OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")

# Present in an upper dir only when the mount used redirect_dir or metacopy.
# Such an upper dir does not contain the full content of a renamed directory or
# a metadata-only copy-up, so it cannot be turned into a layer by a walk.
REDIRECT_XATTRS = ("trusted.overlay.redirect", "user.overlay.redirect")
METACOPY_XATTRS = ("trusted.overlay.metacopy", "user.overlay.metacopy")


def is_overlay_whiteout(st: os.stat_result) -> bool:
    """Return True for a character device 0/0, overlayfs's deleted-path marker."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_overlay_xattr(name: str) -> bool:
    return name.startswith(OVERLAY_XATTR_PREFIXES)


def opaque_xattr_name(userns: bool) -> str:
    return USER_OPAQUE_XATTR if userns else TRUSTED_OPAQUE_XATTR


def is_opaque_dir(path: str) -> bool:
    """Return True when the directory at `path` carries either opaque xattr set to `y`."""
    for name in (TRUSTED_OPAQUE_XATTR, USER_OPAQUE_XATTR):
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError as error:
            if error.errno in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
                continue
            raise
        if value == b"y":
            return True
    return False


def whiteout_target(name: str) -> str | None:
    """Return the deleted name for a `.wh.<name>` basename, else None.

    The opaque marker and other `.wh..wh.` bookkeeping names are not
    whiteouts of a path and also return None.
    """
    if not name.startswith(WHITEOUT_PREFIX) or name.startswith(AUFS_META_PREFIX):
        return None
    target = name[len(WHITEOUT_PREFIX):]
    if target in ("", ".", ".."):
        return None
    return target


def make_overlay_whiteout(path: str) -> None:
    """Create a character device 0/0 at `path`.

    Linux 5.8 and later allow this device without CAP_MKNOD, so it also
    works in an unprivileged user namespace.
    """
    os.mknod(path, stat.S_IFCHR, 0)


def set_opaque(path: str, userns: bool) -> None:
    os.setxattr(path, opaque_xattr_name(userns), b"y", follow_symlinks=False)
