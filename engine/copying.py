"""`cp` between a container and the host, in both directions, as `docker cp` does.

Files travel as a tar: the sending side writes the source with the name it
gets at the destination, and the receiving side unpacks it with
`apply_layer`, which resolves every member inside the destination
directory. Container paths are resolved inside the container's root
(`rootpath`), so neither `..` nor a symlink in the container leads out of it.

Placement follows Docker's rules. A file goes into an existing directory
under its own name, or replaces an existing file, or is created at a new
path whose parent exists. A directory goes into an existing directory under
its own name (only its contents with a `/.` suffix), or becomes a new
directory. Without archive mode (`-a`), copies into a container belong to
root and copies to the host to the user who runs the command.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile

from layerlab.engine.archive import apply_layer, tar_path
from layerlab.engine.container_fs import call_in_root
from layerlab.engine.errors import InvalidArgumentError, NotFoundError
from layerlab.engine.rootpath import resolve_in_root, resolve_parent, split_clean

log = logging.getLogger(__name__)

COPY_BUFFER_SIZE = 1 << 20


def split_copy_argument(text: str) -> tuple[str | None, str]:
    """Split `CONTAINER:PATH` into its parts; a local path (absolute, or with no colon) has no container."""
    if text == "-" or text.startswith("/") or text.startswith("."):
        return None, text
    container, colon, path = text.partition(":")
    if not colon:
        return None, text
    if not container:
        raise InvalidArgumentError(f"invalid copy argument {text!r}: give CONTAINER:PATH or a local path")
    return container, path


def _container_path(path: str) -> str:
    return "/" + "/".join(split_clean(path))


def _source_in_root(root: str, path: str, follow_link: bool = False) -> str:
    # A trailing `/` or `/.` names the directory itself, so only then (or with -L) is a final symlink followed.
    parts = split_clean(path)
    if not parts:
        return root
    if follow_link or path.endswith("/") or path.endswith("/."):
        return resolve_in_root(root, parts)
    return resolve_parent(root, parts)


def _describe(path: str) -> dict:
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return {"exists": False, "is_dir": False, "parent_is_dir": os.path.isdir(os.path.dirname(path))}
    return {"exists": True, "is_dir": stat.S_ISDIR(st.st_mode), "parent_is_dir": True}


def _placement(source_name: str, source_is_dir: bool, contents_only: bool, dest: str, found: dict,
               describe_dest: str) -> tuple[str, str]:
    """Return (directory, name) where the copy lands, from Docker's rules; `dest` is a clean absolute path."""
    if found["exists"] and found["is_dir"]:
        if source_is_dir and contents_only:
            if dest == "/":
                return "/", "."
            return os.path.dirname(dest), os.path.basename(dest)
        return dest, source_name
    if found["exists"]:
        if source_is_dir:
            raise InvalidArgumentError(f"cannot copy a directory to the file {describe_dest}: "
                                       "give a directory or a path that does not exist")
        return os.path.dirname(dest), os.path.basename(dest)
    if describe_dest.endswith("/") and not source_is_dir:
        raise NotFoundError(f"destination directory {describe_dest} does not exist: create it first")
    if not found["parent_is_dir"]:
        raise NotFoundError(f"the parent directory of {describe_dest} does not exist: create it first")
    return os.path.dirname(dest), os.path.basename(dest)


def copy_from_container(engine, record, source: str, dest: str, *, archive: bool = False,
                        follow_link: bool = False, output_fd: int | None = None) -> None:
    """Copy `source` (a path in the container) to the host path `dest`, or as a tar to `output_fd` when dest is `-`.

    With follow_link, a symlink at `source` is copied as the file it points to, as `docker cp -L` does.
    """
    found = call_in_root(engine, record, lambda root: _describe(_source_in_root(root, source, follow_link)))
    if not found["exists"]:
        raise NotFoundError(f"No such container:path: {record.name}:{source}: check the path in the container")
    source_name = os.path.basename(_container_path(source)) or "."
    if source.endswith("/") and not found["is_dir"]:
        raise InvalidArgumentError(f"{record.name}:{source} is not a directory: drop the trailing /")

    if dest == "-":
        _send_tar(engine, record, source, source_name, output_fd if output_fd is not None else 1, owner=None,
                  follow_link=follow_link)
        return

    # Docker follows symlinks on the host side of the destination.
    host_dest = os.path.realpath(dest)
    directory, name = _placement(source_name, found["is_dir"], source.endswith("/."), host_dest,
                                 _describe(host_dest), dest)
    owner = None if archive else (os.getuid(), os.getgid())
    with tempfile.TemporaryFile(dir=engine.store.tmp_dir) as staging:
        _send_tar(engine, record, source, name, staging.fileno(), owner=owner, follow_link=follow_link)
        staging.seek(0)
        # NOTE: apply_layer treats members named `.wh.*` as whiteouts, so such files are not copied.
        apply_layer(staging, directory)


def _send_tar(engine, record, source: str, name: str, fd: int, *, owner, follow_link: bool) -> None:
    def write(root):
        with os.fdopen(os.dup(fd), "wb", buffering=COPY_BUFFER_SIZE) as out:
            tar_path(_source_in_root(root, source, follow_link), name, out, owner=owner)

    call_in_root(engine, record, write)


def copy_to_container(engine, record, source: str, dest: str, *, archive: bool = False,
                      input_file=None) -> None:
    """Copy the host path `source` into the container at `dest`; with source `-`, unpack the tar in `input_file`."""
    if source == "-":
        _copy_tar_stream(engine, record, input_file, dest)
        return

    host_source = os.path.abspath(source)
    try:
        source_st = os.lstat(host_source)
    except FileNotFoundError:
        raise NotFoundError(f"could not find the file {source} on this host: check the path") from None
    source_is_dir = stat.S_ISDIR(source_st.st_mode)
    if source.endswith("/") and not source_is_dir:
        raise InvalidArgumentError(f"{source} is not a directory: drop the trailing /")

    clean_dest = _container_path(dest)
    found = call_in_root(engine, record, lambda root: _describe(resolve_in_root(root, split_clean(dest))))
    directory, name = _placement(os.path.basename(host_source) or ".", source_is_dir, source.endswith("/."),
                                 clean_dest, found, f"{record.name}:{dest}")
    owner = None if archive else (0, 0)
    with tempfile.TemporaryFile(dir=engine.store.tmp_dir) as staging:
        tar_path(host_source, name, staging, owner=owner)
        staging.flush()
        _receive_tar(engine, record, staging.fileno(), directory)


def _copy_tar_stream(engine, record, input_file, dest: str) -> None:
    found = call_in_root(engine, record, lambda root: _describe(resolve_in_root(root, split_clean(dest))))
    if not (found["exists"] and found["is_dir"]):
        raise InvalidArgumentError(f'destination "{record.name}:{dest}" must be a directory: '
                                   "a tar stream is unpacked into a directory")
    with tempfile.TemporaryFile(dir=engine.store.tmp_dir) as staging:
        while chunk := input_file.read(COPY_BUFFER_SIZE):
            staging.write(chunk)
        staging.flush()
        _receive_tar(engine, record, staging.fileno(), _container_path(dest))


def _receive_tar(engine, record, fd: int, directory: str) -> None:
    def unpack(root):
        target = resolve_in_root(root, split_clean(directory))
        os.lseek(fd, 0, os.SEEK_SET)
        with os.fdopen(os.dup(fd), "rb", buffering=COPY_BUFFER_SIZE) as tar:
            apply_layer(tar, target)

    call_in_root(engine, record, unpack)
