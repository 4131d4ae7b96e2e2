"""Resolve paths inside a root directory without ever leaving it.

A layer tar is untrusted input: its member names may contain `..` or start
with `/`, and its symlinks may point anywhere. Every path is resolved here
as the kernel would resolve it with the root directory as `/`, which is what
`openat2(RESOLVE_IN_ROOT)` and Go's securejoin do. So `..` at the root stays
at the root, and an absolute symlink target restarts at the root.

The walk uses lstat and readlink on path strings, so it is only safe while
nothing else changes the tree under the root. The archive code keeps that
invariant because it is the only writer of a directory it unpacks into.
"""

import errno
import logging
import os
import stat

from layerlab.engine.errors import InvalidArgumentError

logger = logging.getLogger(__name__)

# The kernel's own limit on symlinks followed in one lookup (MAXSYMLINKS).
MAX_SYMLINKS = 40


def split_clean(name: str) -> list[str]:
    """Split a member name into components, resolving `.` and `..` lexically.

    The name is treated as relative to the root whether or not it starts
    with `/`, and `..` never climbs above the root, as Go's
    `filepath.Clean("/" + name)` does.
    """
    parts: list[str] = []
    for component in name.split("/"):
        if component in ("", "."):
            continue
        if component == "..":
            if parts:
                parts.pop()
            continue
        parts.append(component)
    return parts


def is_lexically_unsafe(name: str) -> bool:
    """Return True when a member name is absolute or contains a `..` component."""
    return name.startswith("/") or ".." in name.split("/")


def resolve_in_root(root: str, parts: list[str]) -> str:
    """Return the host path of `parts` below `root`, following symlinks inside it.

    Every component is resolved, the last one included, and a symlink's
    target is interpreted with `root` as `/`. A component that does not
    exist ends symlink resolution: it and the rest are appended as they are.
    Raises InvalidArgumentError on a symlink loop.
    """
    pending = list(reversed(parts))
    resolved: list[str] = []
    followed = 0

    while pending:
        component = pending.pop()
        if component in ("", "."):
            continue
        if component == "..":
            if resolved:
                resolved.pop()
            continue

        candidate = os.path.join(root, *resolved, component)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(component)
            continue
        except NotADirectoryError:
            resolved.append(component)
            continue

        if not stat.S_ISLNK(st.st_mode):
            resolved.append(component)
            continue

        followed += 1
        if followed > MAX_SYMLINKS:
            raise InvalidArgumentError(
                f"too many levels of symbolic links resolving {'/'.join(parts)!r} "
                f"under {root}: the layer contains a symlink loop, fix or rebuild the layer"
            )
        target = os.readlink(candidate)
        if target.startswith("/"):
            resolved = []
        pending.extend(reversed(target.split("/")))

    return os.path.join(root, *resolved)


def resolve_parent(root: str, parts: list[str]) -> str:
    """Return the host path for `parts` with every component but the last resolved.

    The last component is kept as it is, so the caller acts on that entry
    itself and not on what a symlink there points to (as lstat, unlink and
    link do).
    """
    if not parts:
        raise InvalidArgumentError(f"empty path under {root}: give a path below the root")
    return os.path.join(resolve_in_root(root, parts[:-1]), parts[-1])


def ensure_directory(root: str, path: str) -> None:
    """Create the missing directories of `path` (below `root`) with mode 0755.

    `path` must come from `resolve_in_root`, so its existing components are
    directories or non-directories but never symlinks. A non-directory in
    the way raises NotADirectoryError.
    """
    relative = os.path.relpath(path, root)
    if relative == ".":
        return
    current = root
    for component in relative.split("/"):
        current = os.path.join(current, component)
        try:
            os.mkdir(current, 0o755)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(current).st_mode):
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", current) from None
