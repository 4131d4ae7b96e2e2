"""Flatten images into comparable file trees: layerlab's by applying its layers, Docker's by `docker export`."""

import hashlib
import os
import stat
import tempfile

from layerlab.engine.unpack import apply_layer

# Paths that `docker export` shows for every container and a build does not make.
CONTAINER_ONLY = {".dockerenv", "etc/mtab", "etc/hosts", "etc/hostname", "etc/resolv.conf", "dev", "proc", "sys"}


def describe_tree(root):
    """Return {relative path: (type, mode, uid, gid, content digest or link target)}."""
    entries = {}
    for current, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            full = os.path.join(current, name)
            rel = os.path.relpath(full, root)
            if rel.split("/")[0] in CONTAINER_ONLY or rel in CONTAINER_ONLY:
                continue
            info = os.lstat(full)
            kind = stat.S_IFMT(info.st_mode)
            if stat.S_ISREG(info.st_mode):
                with open(full, "rb") as handle:
                    detail = hashlib.sha256(handle.read()).hexdigest()[:16]
            elif stat.S_ISLNK(info.st_mode):
                detail = os.readlink(full)
            else:
                detail = ""
            entries[rel] = (kind, oct(stat.S_IMODE(info.st_mode)), info.st_uid, info.st_gid, detail)
    return entries


def layerlab_tree(engine, image, scratch):
    """Apply the image's layers in order into a fresh folder and describe it."""
    root = tempfile.mkdtemp(dir=scratch)
    for layer in image.layers:
        with open(engine.store.blob_path(layer.digest), "rb") as blob:
            apply_layer(blob, root)
    return describe_tree(root)


def docker_tree(dockerd, image, scratch):
    """Export a container of the image with `docker export` and describe its files."""
    container = dockerd.docker("create", image).stdout.strip()
    try:
        tar_path = os.path.join(scratch, f"{container}.tar")
        dockerd.docker("export", "-o", tar_path, container)
    finally:
        dockerd.docker("rm", container)
    root = tempfile.mkdtemp(dir=scratch)
    with open(tar_path, "rb") as tar:
        apply_layer(tar, root)
    return describe_tree(root)
