"""COPY and ADD sources that are not in the build context: stages, images, heredocs and URLs.

Each kind is first materialised in a staging folder under the step's
scratch space, laid out as a little build context, so the same matching,
hashing and copying code serves every source. The staging folder's
content hash is the step's cache key material, as the build context's is.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import logging
import os
# Imported before the fork: after chroot the child cannot import it, and runtime.child_errors
# then sends errors as plain text, which loses their type.
import pickle  # noqa: F401
import posixpath
import shutil
import stat
import urllib.parse

from layerlab.engine.errors import DockerfileError, InvalidArgumentError, NotFoundError

log = logging.getLogger(__name__)

DOWNLOAD_BUFFER = 1 << 20
DOWNLOAD_TIMEOUT = 60
# ADD writes a downloaded file with these permissions, as Docker does.
URL_FILE_MODE = 0o600
HEREDOC_FILE_MODE = 0o644


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def export_from_root(rootfs, patterns: list[str], staging: str) -> None:
    """Copy what `patterns` match in the overlay `rootfs` into `staging`, keeping their paths."""
    from layerlab.engine import runtime

    staging_fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
    try:
        runtime.run_in_rootfs(rootfs, lambda merged: _export_in_child(merged, patterns, staging_fd))
    finally:
        os.close(staging_fd)


def _export_in_child(merged: str, patterns: list[str], staging_fd: int) -> None:
    # chroot makes the image's own absolute symlinks resolve inside its root.
    os.chroot(merged)
    os.chdir("/")
    for pattern in patterns:
        absolute = posixpath.normpath("/" + pattern.lstrip("/"))
        matches = sorted(glob.glob(absolute)) if glob.has_magic(absolute) else [absolute]
        for path in matches:
            if not os.path.lexists(path):
                raise NotFoundError(f"{pattern}: no such file or directory in the source stage or image")
            if not os.path.exists(path):
                # Inside the chroot, every symlink on the way resolved within the stage's root.
                raise InvalidArgumentError(
                    f"{path} is a symlink to {os.readlink(path)!r}, which is not found in the source stage or "
                    "image: copy the link's target instead")
            _export_tree(path, staging_fd)


def _export_tree(path: str, staging_fd: int) -> None:
    relative = path.lstrip("/") or "."
    if relative != ".":
        _make_parents(posixpath.dirname(relative), staging_fd)
        # A named source follows its own symlink, as COPY does in the context.
        _export_entry(path, relative, staging_fd, follow=True)
    if os.path.isdir(path):
        for current, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                source = posixpath.join(current, name)
                target = posixpath.relpath(source, "/")
                _export_entry(source, target, staging_fd, follow=False)


def _make_parents(relative: str, staging_fd: int) -> None:
    if relative in ("", "."):
        return
    parts = relative.split("/")
    for index in range(1, len(parts) + 1):
        try:
            os.mkdir("/".join(parts[:index]), 0o755, dir_fd=staging_fd)
        except FileExistsError:
            _check_staged_directory("/".join(parts[:index]), staging_fd)


def _check_staged_directory(relative: str, staging_fd: int) -> None:
    """Raise unless `relative` in the staging folder is a real directory.

    The staging folder lies outside the child's chroot, so a symlink that an
    earlier source staged there must never be followed: its target would
    resolve on the host.
    """
    info = os.stat(relative, dir_fd=staging_fd, follow_symlinks=False)
    if not stat.S_ISDIR(info.st_mode):
        raise InvalidArgumentError(
            f"the sources overlap: /{relative} is a symlink or file that another source also copies a path "
            "through; copy them with separate COPY --from instructions")


def _export_entry(source: str, target: str, staging_fd: int, *, follow: bool) -> None:
    info = os.stat(source) if follow else os.lstat(source)
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISDIR(info.st_mode):
        try:
            os.mkdir(target, mode, dir_fd=staging_fd)
        except FileExistsError:
            _check_staged_directory(target, staging_fd)
        os.chmod(target, mode, dir_fd=staging_fd)
    elif stat.S_ISLNK(info.st_mode):
        link = os.readlink(source)
        try:
            os.symlink(link, target, dir_fd=staging_fd)
        except FileExistsError:
            existing = os.stat(target, dir_fd=staging_fd, follow_symlinks=False)
            # The same symlink staged twice, by two sources that both contain it, is harmless.
            if not (stat.S_ISLNK(existing.st_mode) and os.readlink(target, dir_fd=staging_fd) == link):
                _check_staged_directory(target, staging_fd)
            return
    elif stat.S_ISREG(info.st_mode):
        with open(source, "rb") as reader:
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode,
                             dir_fd=staging_fd)
            except OSError as error:
                if error.errno != errno.ELOOP:
                    raise
                _check_staged_directory(target, staging_fd)
                raise
            with open(fd, "wb") as writer:
                shutil.copyfileobj(reader, writer, DOWNLOAD_BUFFER)
                os.fchmod(fd, mode)
    else:
        return
    os.chown(target, info.st_uid, info.st_gid, dir_fd=staging_fd, follow_symlinks=False)
    if not stat.S_ISLNK(info.st_mode):
        os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns), dir_fd=staging_fd, follow_symlinks=False)


def write_heredocs(heredocs, staging: str, source_date_epoch: int | None) -> list[str]:
    """Write each heredoc source as a file named after its delimiter; return the names."""
    names = []
    for heredoc in heredocs:
        path = os.path.join(staging, heredoc.name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(heredoc.data if hasattr(heredoc, "data") else heredoc.content)
        os.chmod(path, HEREDOC_FILE_MODE)
        if source_date_epoch is not None:
            os.utime(path, (source_date_epoch, source_date_epoch))
        names.append(heredoc.name)
    return names


def download(url: str, staging: str, checksum: str | None, *, where: dict) -> str:
    """Download `url` into `staging`, verify `checksum` and return the file's name there.

    `where` holds the DockerfileError location (path, line, instruction).
    The file's mtime is the response's Last-Modified header when it has one.
    """
    # Only ADD with a URL needs the HTTP client, so other builds do not import it.
    import email.utils
    import urllib.request

    name = posixpath.basename(urllib.parse.urlsplit(url).path) or "__unnamed__"
    path = os.path.join(staging, name)
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response, open(path, "wb") as out:
            while chunk := response.read(DOWNLOAD_BUFFER):
                digest.update(chunk)
                out.write(chunk)
            last_modified = response.headers.get("Last-Modified")
    except OSError as error:
        raise DockerfileError(f"failed to download {url}: {error}: check the URL and that the server is reachable",
                              **where) from None

    if checksum:
        algorithm, _, expected = checksum.partition(":")
        if algorithm != "sha256" or not expected:
            raise DockerfileError(f"invalid --checksum {checksum!r}: write sha256:<64 hex digits>", **where)
        if digest.hexdigest() != expected.lower():
            raise DockerfileError(
                f"checksum mismatch for {url}: expected sha256:{expected}, got sha256:{digest.hexdigest()}",
                **where)

    os.chmod(path, URL_FILE_MODE)
    if last_modified:
        try:
            moment = email.utils.parsedate_to_datetime(last_modified).timestamp()
            os.utime(path, (moment, moment))
        except (TypeError, ValueError):
            log.warning("ignoring invalid Last-Modified header %r from %s", last_modified, url)
    return name
