"""COPY and ADD's file copying, run inside a forked child chrooted into the overlay.

The child reads sources through a directory file descriptor opened on the
build context before `chroot`, and writes destinations by ordinary paths
inside the chroot, so the kernel resolves the image's own symlinks (such
as Debian's `/bin -> usr/bin`) without any path leaving the root.
"""

from __future__ import annotations

import os
# Imported before the fork: after chroot the child cannot import it, and runtime.child_errors
# then sends errors as plain text, so the builder could not tell a missing --chown user by type.
import pickle  # noqa: F401
import shutil
import stat
from dataclasses import dataclass, field

from layerlab.engine.build import archives
from layerlab.engine.errors import NotFoundError

COPY_BUFFER = 1 << 20


@dataclass
class CopyPlan:
    """What one COPY step writes: each source's files, the destination and the owner."""

    # (name as written, path with symlinks resolved, is_dir, files under it), paths relative to the context
    sources: list[tuple[str, str, bool, list[str]]]
    dest: str  # absolute inside the container
    dest_is_dir: bool
    chown: str = ""  # "user[:group]" resolved inside the image, or "" for 0:0
    chmod: int | None = None
    created_dirs: list[str] = field(default_factory=list)
    parents: bool = False  # COPY --parents: keep each source's context path under dest
    extract_archives: bool = False  # ADD: unpack local tar archives instead of copying them


def copy_into_root(context_fd: int, merged: str, plan: CopyPlan) -> None:
    """Chroot into `merged` and copy the plan's files there; only ever called in a throwaway child."""
    os.chroot(merged)
    os.chdir("/")
    uid, gid = resolve_owner(plan.chown)

    for name, resolved, is_dir, files in plan.sources:
        base = os.path.join(plan.dest, name) if plan.parents and name not in ("", ".") else plan.dest
        if is_dir:
            _make_dirs(base, uid, gid)
            for rel in files:
                inner = os.path.relpath(rel, resolved) if resolved not in ("", ".") else rel
                _copy_entry(context_fd, rel, os.path.join(base, inner), uid, gid, plan.chmod)
        elif plan.extract_archives and archives.is_archive(context_fd, resolved):
            _make_dirs(plan.dest, uid, gid)
            archives.extract(context_fd, resolved, plan.dest)
        elif plan.parents:
            _make_dirs(os.path.dirname(base), uid, gid)
            _copy_entry(context_fd, resolved, base, uid, gid, plan.chmod)
        else:
            target = plan.dest
            if plan.dest_is_dir or os.path.isdir(target):
                _make_dirs(target, uid, gid)
                # The name comes from the source as written, so a copied symlink keeps the link's name.
                target = os.path.join(target, os.path.basename(name))
            else:
                _make_dirs(os.path.dirname(target) or "/", uid, gid)
            _copy_entry(context_fd, resolved, target, uid, gid, plan.chmod)


def resolve_owner(spec: str) -> tuple[int, int]:
    """Resolve `user[:group]` against the image's /etc/passwd and /etc/group (we are chrooted)."""
    if not spec:
        return 0, 0
    user, _, group = spec.partition(":")
    uid, primary_gid = _lookup_user(user)
    gid = _lookup_group(group) if group else primary_gid
    return uid, gid


def _lookup_user(user: str) -> tuple[int, int]:
    if user.isdigit():
        for fields in _read_db("/etc/passwd"):
            if len(fields) > 3 and fields[2] == user:
                return int(user), int(fields[3])
        return int(user), int(user)
    for fields in _read_db("/etc/passwd"):
        if fields[0] == user and len(fields) > 3:
            return int(fields[2]), int(fields[3])
    raise NotFoundError(f"unable to find user {user}: no matching entries in passwd file")


def _lookup_group(group: str) -> int:
    if group.isdigit():
        return int(group)
    for fields in _read_db("/etc/group"):
        if fields[0] == group and len(fields) > 2:
            return int(fields[2])
    raise NotFoundError(f"unable to find group {group}: no matching entries in group file")


def _read_db(path: str) -> list[list[str]]:
    try:
        with open(path) as db:
            return [line.rstrip("\n").split(":") for line in db if line.strip() and not line.startswith("#")]
    except FileNotFoundError:
        return []


def _make_dirs(path: str, uid: int, gid: int) -> None:
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path.rstrip("/"))
    if parent and parent != path:
        _make_dirs(parent, uid, gid)
    os.mkdir(path, 0o755)
    os.lchown(path, uid, gid)


def _copy_entry(context_fd: int, rel: str, target: str, uid: int, gid: int, chmod: int | None) -> None:
    # `rel` is already resolved inside the context, so a symlink here is one to copy as it is.
    info = os.stat(rel, dir_fd=context_fd, follow_symlinks=False)
    mode = stat.S_IMODE(info.st_mode) if chmod is None else chmod

    if stat.S_ISDIR(info.st_mode):
        if not os.path.isdir(target):
            _remove_existing(target)
            os.mkdir(target, mode)
        os.chmod(target, mode)
    elif stat.S_ISLNK(info.st_mode):
        _remove_existing(target)
        os.symlink(os.readlink(rel, dir_fd=context_fd), target)
    elif stat.S_ISREG(info.st_mode):
        _remove_existing(target)
        _copy_file(context_fd, rel, target, mode)
    else:
        # Sockets, fifos and devices in a build context are not copied, as Docker skips them too.
        return

    os.lchown(target, uid, gid)
    if not stat.S_ISLNK(info.st_mode):
        os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))


def _copy_file(context_fd: int, rel: str, target: str, mode: int) -> None:
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    source_fd = os.open(rel, flags, dir_fd=context_fd)
    try:
        target_fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            size = os.fstat(source_fd).st_size
            offset = 0
            while offset < size:
                sent = os.sendfile(target_fd, source_fd, offset, min(size - offset, 1 << 30))
                if sent == 0:
                    break
                offset += sent
            os.fchmod(target_fd, mode)
        finally:
            os.close(target_fd)
    finally:
        os.close(source_fd)


def _remove_existing(target: str) -> None:
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(target)
    else:
        os.unlink(target)
