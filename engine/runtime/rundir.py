"""Directories the runtime owns on the host, shared by every container.

`empty` is the lower layer of an image with no layers, because overlayfs
needs at least one. `mnt` is where a child mounts a container's overlay
inside its own mount namespace. Each child mounts there privately, so all
containers can share it and no mount appears in the host's namespace.
"""

import logging
import os
import stat

from layerlab.engine.errors import ContainerError
from layerlab.engine.runtime.userns import host_uid

log = logging.getLogger(__name__)


def _base_dir():
    # A rootless container's child is uid 0 in its user namespace, but it
    # must use the same directory as the ordinary user who launched it.
    uid = host_uid()
    if uid == 0 and os.path.isdir("/run"):
        return "/run/layerlab"
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        return os.path.join(runtime_dir, "layerlab")
    return os.path.join(os.environ.get("TMPDIR", "/tmp"), f"layerlab-{uid}")


def _ensure_private_dir(path):
    try:
        os.mkdir(path, 0o755)
        log.debug("created runtime directory %s", path)
    except FileExistsError:
        pass

    # In a shared directory such as /tmp another user could have created the
    # path first, as a symlink or a directory they can write to.
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise ContainerError(
            f"runtime directory {path} is not a directory owned by uid {os.geteuid()} "
            f"and writable only by it; remove it and retry"
        )


def runtime_dir(name):
    """Return the path of the runtime's directory `name` ("empty" or "mnt"), creating it if needed."""
    base = _base_dir()
    path = os.path.join(base, name)
    _ensure_private_dir(base)
    _ensure_private_dir(path)
    return path
