"""The mount table of /proc/self/mountinfo, and read-only remounts of a mount tree without mount_setattr(2).

Linux before 5.12 has no mount_setattr(2), and a bind remount
(MS_BIND | MS_REMOUNT) changes the flags of one mount only. Making a tree
read-only there means remounting each of its mounts, found in the table.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

from layerlab.engine.errors import ContainerError
from layerlab.engine.runtime import syscalls

log = logging.getLogger(__name__)

MOUNTINFO = "/proc/self/mountinfo"

# Per-mount options (field 6 of mountinfo) and the mount(2) flags that keep
# them. A bind remount sets exactly the flags it is given, so it must repeat
# these, and in a user namespace the kernel rejects (EPERM) a remount that
# would clear a flag that is locked.
_OPTION_FLAGS = {
    "nosuid": syscalls.MS_NOSUID,
    "nodev": syscalls.MS_NODEV,
    "noexec": syscalls.MS_NOEXEC,
    "noatime": syscalls.MS_NOATIME,
    "nodiratime": syscalls.MS_NODIRATIME,
    "relatime": syscalls.MS_RELATIME,
    "nosymfollow": syscalls.MS_NOSYMFOLLOW,
}

_OCTAL_ESCAPE = re.compile(rb"\\([0-7]{3})")


@dataclass(frozen=True)
class MountEntry:
    """One line of mountinfo: the mount's ID, its parent's ID, its mount point and its per-mount options."""

    mount_id: int
    parent_id: int
    mount_point: str
    options: tuple[str, ...]

    def remount_flags(self) -> int:
        """Return the flags of a read-only bind remount that keeps this mount's other options."""
        flags = syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY
        for option in self.options:
            flags |= _OPTION_FLAGS.get(option, 0)
        if "relatime" not in self.options and "noatime" not in self.options:
            # Without an atime flag the kernel would switch the mount to relatime.
            flags |= syscalls.MS_STRICTATIME
        return flags


def _unescape(field: bytes) -> str:
    # The kernel writes space, tab, newline and backslash in paths as
    # three-digit octal escapes such as `\040`, and other bytes appear as they are.
    return os.fsdecode(_OCTAL_ESCAPE.sub(lambda match: bytes([int(match.group(1), 8)]), field))


def parse_line(line: bytes) -> MountEntry:
    """Parse one mountinfo line, as described in proc(5)."""
    fields = line.split()
    return MountEntry(
        mount_id=int(fields[0]),
        parent_id=int(fields[1]),
        mount_point=_unescape(fields[4]),
        options=tuple(fields[5].decode("ascii").split(",")),
    )


def read_mountinfo(path: str = MOUNTINFO) -> list[MountEntry]:
    """Return the entries of the calling process's mount table, in the kernel's order."""
    with open(path, "rb") as table:
        return [parse_line(line) for line in table if line.strip()]


def mount_tree(path: str, entries: list[MountEntry]) -> list[MountEntry]:
    """Return the mounts visible at `path` and below it, each parent before its children.

    `path` must be a mount point, written as mountinfo writes it (absolute,
    with no symlink). Where mounts are stacked on one mount point, only the
    top one is returned, and the children of the covered ones are left out,
    because no path reaches them.

    NOTE: a submount hidden by a later mount on one of its parent folders is
    still returned, so its remount fails or changes the mount that hides it.
    """
    children: dict[int, list[MountEntry]] = {}
    for entry in entries:
        children.setdefault(entry.parent_id, []).append(entry)

    at_path = [entry for entry in entries if entry.mount_point == path]
    if not at_path:
        raise ContainerError(f"cannot make {path} read-only: it is not a mount point in /proc/self/mountinfo")
    stacked_ids = {entry.mount_id for entry in at_path}
    # The bottom of the stack is the one whose parent is mounted elsewhere.
    pending = [entry for entry in at_path if entry.parent_id not in stacked_ids][:1] or at_path[:1]

    tree = []
    seen = set()
    while pending:
        entry = pending.pop(0)
        if entry.mount_id in seen:
            continue
        seen.add(entry.mount_id)
        below = [child for child in children.get(entry.mount_id, ()) if child.mount_id != entry.mount_id]
        covering = [child for child in below if child.mount_point == entry.mount_point]
        if covering:
            pending.extend(covering[-1:])
            continue
        tree.append(entry)
        pending.extend(below)
    return tree


def remount_tree_readonly(path: str, mountinfo: str = MOUNTINFO) -> None:
    """Remount the mount at `path` and every mount below it read-only, keeping their other flags."""
    target = os.path.realpath(path)
    for entry in mount_tree(target, read_mountinfo(mountinfo)):
        log.debug("remounting %s read-only (mount ID %d)", entry.mount_point, entry.mount_id)
        syscalls.mount(None, entry.mount_point, None, entry.remount_flags())
