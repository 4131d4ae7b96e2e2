"""Mount points inside an image's root, created without following its symlinks."""

import logging
import os
import stat

from layerlab.engine.errors import ContainerError

log = logging.getLogger(__name__)


def ensure_mountpoint(root, path, directory=True):
    """Create `path` (absolute inside the container) under `root` if missing and return its host path.

    Missing parents are created as directories, and the last component as a
    directory or an empty file. A symlink on the way raises ContainerError,
    because the host would resolve it against its own root and mount over a
    host path.

    What this creates lands in the container's upper directory, so `diff`,
    `commit` and `export` show it, as with Docker 20.10, whose runc creates
    missing mount points in the container's layer too.
    """
    components = [part for part in path.split("/") if part]
    current = root
    for index, name in enumerate(components):
        current = os.path.join(current, name)
        last = index == len(components) - 1
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            _create(current, directory or not last)
            continue

        prefix = "/" + "/".join(components[:index + 1])
        if stat.S_ISLNK(info.st_mode):
            raise ContainerError(f"cannot mount on {path}: {prefix} is a symbolic link in the image")
        if not last and not stat.S_ISDIR(info.st_mode):
            raise ContainerError(f"cannot mount on {path}: {prefix} is not a directory in the image")
    return current


def _create(path, directory):
    log.debug("creating mount point %s", path)
    if directory:
        os.mkdir(path, 0o755)
    else:
        # Mode 0755, as runc gives a file mount point, so that a committed
        # image matches Docker's.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o755))
