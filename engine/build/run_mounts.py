"""RUN --mount: cache, bind, tmpfs and secret mounts for one build container.

Cache mounts persist under the store's `cache-mounts/<id>`; bind mounts come
from the build context or from a stage or image (copied into a staging
folder, so the step cannot change them); secrets come from
`--secret id=NAME,src=PATH`. None of them ends up in the step's layer:
mount points the runtime had to create are removed from the upper dir.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tempfile

from layerlab.engine.build import sources as staged
from layerlab.engine.build.layers import Scratch, rootfs_for
from layerlab.engine.errors import DockerfileError


class MountSet:
    """The runtime mounts for one RUN step, and the staging folders to remove afterwards."""

    def __init__(self):
        self.mounts = []
        self.targets: list[str] = []
        self._folders: list[str] = []

    def close(self) -> None:
        for folder in self._folders:
            shutil.rmtree(folder, ignore_errors=True)


def prepare_mounts(run, specs: list[dict], workdir: str, where: dict) -> MountSet:
    """Turn the parsed --mount options into runtime mounts."""
    from layerlab.engine.runtime import Mount

    result = MountSet()
    try:
        for spec in specs:
            kind = spec.get("type", "bind")
            handler = _HANDLERS.get(kind)
            if handler is None:
                raise DockerfileError(f"RUN --mount=type={kind} is not supported: use bind, cache, tmpfs or secret",
                                      **where)
            mount = handler(run, spec, result, where)
            if mount is None:
                continue
            mount.target = posixpath.normpath(posixpath.join(workdir, mount.target))
            result.mounts.append(mount)
            result.targets.append(mount.target)
    except BaseException:
        result.close()
        raise
    return result


def _target(spec: dict, where: dict) -> str:
    target = spec.get("target") or spec.get("dst") or spec.get("destination")
    if not target:
        raise DockerfileError(f"RUN --mount=type={spec.get('type', 'bind')} needs target=PATH", **where)
    return target


def _cache(run, spec, result, where):
    from layerlab.engine.runtime import Mount

    target = _target(spec, where)
    cache_id = spec.get("id") or target
    # The id may be any text, so it is hashed into a safe folder name.
    name = hashlib.sha256(cache_id.encode()).hexdigest()[:32]
    host = os.path.join(run.engine.root, "cache-mounts", name)
    if not os.path.isdir(host):
        os.makedirs(host, exist_ok=True)
        os.chmod(host, int(str(spec.get("mode") or "755"), 8))
        os.chown(host, int(spec.get("uid") or 0), int(spec.get("gid") or 0))
    return Mount("bind", target, host, readonly=bool(spec.get("readonly")))


def _bind(run, spec, result, where):
    from layerlab.engine.runtime import Mount

    target = _target(spec, where)
    source = spec.get("source") or spec.get("src") or "/"
    readonly = not spec.get("rw") and spec.get("readonly", True) is not False
    staging = tempfile.mkdtemp(prefix="mount-", dir=run.engine.store.tmp_dir)
    result._folders.append(staging)

    if spec.get("from"):
        image = run.stage_image(spec["from"], where)
        scratch = Scratch(run.engine.store.tmp_dir)
        try:
            staged.export_from_root(rootfs_for(run, image, scratch), [source], staging)
        finally:
            scratch.close()
        host = os.path.join(staging, posixpath.normpath("/" + source).lstrip("/"))
    else:
        relative = os.path.normpath(source.lstrip("/")) if source.strip("/") else "."
        host = os.path.realpath(os.path.join(run.context.root, relative))
        if host != run.context.root and not host.startswith(run.context.root + os.sep):
            raise DockerfileError(f"RUN --mount source {source!r} is outside the build context", **where)
        if not os.path.exists(host):
            raise DockerfileError(f"RUN --mount source {source!r} not found in the build context", **where)
        if not readonly:
            # A writable bind must not change the context: the step writes to a copy.
            copy = os.path.join(staging, "rw")
            if os.path.isdir(host):
                shutil.copytree(host, copy, symlinks=True)
            else:
                shutil.copy2(host, copy)
            host = copy
    return Mount("bind", target, host, readonly=readonly)


def _tmpfs(run, spec, result, where):
    from layerlab.engine.runtime import Mount

    options = f"size={spec['size']}" if spec.get("size") else ""
    return Mount("tmpfs", _target(spec, where), options=options)


def _secret(run, spec, result, where):
    from layerlab.engine.runtime import Mount

    secret_id = spec.get("id") or posixpath.basename(spec.get("target") or "")
    target = spec.get("target") or f"/run/secrets/{secret_id}"
    path = run.request.secrets.get(secret_id)
    if path is None:
        if spec.get("required") in (True, "true"):
            raise DockerfileError(f"secret {secret_id!r} is required: pass --secret id={secret_id},src=PATH", **where)
        return None
    return Mount("bind", target, os.path.abspath(path), readonly=True)


_HANDLERS = {"cache": _cache, "bind": _bind, "tmpfs": _tmpfs, "secret": _secret}


def remove_mountpoints(upper: str, lowerdirs: list[str], targets: list[str]) -> None:
    """Remove mount points (and their parents) that the runtime created in the upper dir."""
    for target in targets:
        path = target
        while path not in ("/", ""):
            relative = path.lstrip("/")
            in_lower = any(os.path.lexists(os.path.join(lower, relative)) for lower in lowerdirs)
            host = os.path.join(upper, relative)
            if in_lower or not os.path.lexists(host):
                break
            if os.path.isdir(host) and not os.path.islink(host):
                if os.listdir(host):
                    break
                os.rmdir(host)
            elif os.path.getsize(host) == 0:
                os.unlink(host)
            else:
                break
            path = posixpath.dirname(path)
