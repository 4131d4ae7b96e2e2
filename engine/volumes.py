"""Volumes and the mount flags of `run`: `-v`, `--mount` and `--tmpfs`.

A named volume is the directory `volumes/<name>/_data` of the store, as
Docker's local driver keeps `/var/lib/docker/volumes/<name>/_data`, with
its creation time and labels in `volumes/<name>/volume.json`. `run -v
name:/path` creates a missing volume, and the container's init fills an
empty one from the image's files at /path (unless `nocopy`), as Docker does.

A container record keeps its mounts in the form of `docker inspect`'s
`Mounts` entries (Type, Name, Source, Destination, Mode, RW), plus
`Options` for tmpfs and `NoCopy` for volumes.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import secrets

from layerlab.engine.errors import ConflictError, InvalidArgumentError, NotFoundError
from layerlab.engine.locking import file_lock

log = logging.getLogger(__name__)

# Docker's rule for local volume names.
_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

_VOLUME_MODES = {"ro", "rw", "z", "Z", "nocopy", "shared", "rshared", "slave", "rslave", "private", "rprivate"}

# --tmpfs without options gets these, as in Docker.
DEFAULT_TMPFS_OPTIONS = "noexec,nosuid,nodev"


class Volumes:
    """The `volumes/` folder of a store."""

    def __init__(self, root: str):
        self.root = os.path.join(root, "volumes")
        self.lock_path = os.path.join(root, "locks", "volumes.lock")

    def path(self, name: str) -> str:
        """Return the host directory of volume `name`'s data."""
        return os.path.join(self.root, name, "_data")

    def exists(self, name: str) -> bool:
        return os.path.isdir(self.path(name))

    def create(self, name: str = "", labels: dict[str, str] | None = None) -> str:
        """Create volume `name` (a random 64-hex name if empty) unless it exists; return its name."""
        name = name or secrets.token_hex(32)
        check_volume_name(name)
        os.makedirs(os.path.dirname(self.lock_path), exist_ok=True)
        with file_lock(self.lock_path):
            if self.exists(name):
                return name
            os.makedirs(self.path(name), 0o755)
            metadata = {"CreatedAt": _now(), "Labels": labels or {}}
            with open(os.path.join(self.root, name, "volume.json"), "w") as file:
                json.dump(metadata, file)
        log.info("created volume %s", name)
        return name

    def names(self) -> list[str]:
        if not os.path.isdir(self.root):
            return []
        return sorted(name for name in os.listdir(self.root) if self.exists(name))

    def inspect(self, name: str) -> dict:
        """Return `docker volume inspect`'s document for `name`."""
        if not self.exists(name):
            raise NotFoundError(f"get {name}: no such volume")
        try:
            with open(os.path.join(self.root, name, "volume.json")) as file:
                metadata = json.load(file)
        except (OSError, ValueError):
            metadata = {}
        return {
            "CreatedAt": metadata.get("CreatedAt", ""),
            "Driver": "local",
            "Labels": metadata.get("Labels") or None,
            "Mountpoint": self.path(name),
            "Name": name,
            "Options": None,
            "Scope": "local",
        }

    def remove(self, name: str, users: list[str]) -> None:
        """Remove volume `name`; `users` are the IDs of containers that mount it."""
        if not self.exists(name):
            raise NotFoundError(f"get {name}: no such volume")
        if users:
            raise ConflictError(f"remove {name}: volume is in use - [{', '.join(users)}]")
        with file_lock(self.lock_path):
            _remove_tree(os.path.join(self.root, name))
        log.info("removed volume %s", name)


def _remove_tree(path):
    from layerlab.engine.rootless import remove_tree

    # Files written by a rootless container may belong to subordinate ids.
    remove_tree(path)


def check_volume_name(name: str) -> None:
    if not _NAME_PATTERN.match(name):
        raise InvalidArgumentError(
            f'create {name}: "{name}" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path'
        )


def volume_users(engine) -> dict[str, list[str]]:
    """Return volume name -> IDs of the containers whose mounts use it."""
    users: dict[str, list[str]] = {}
    for record in engine.containers.list():
        for mount in getattr(record, "mounts", None) or []:
            if mount.get("Type") == "volume":
                users.setdefault(mount["Name"], []).append(record.id)
    return users


def _check_destination(destination: str, spec: str) -> str:
    if not destination.startswith("/"):
        raise InvalidArgumentError(f"invalid volume specification: '{spec}': the mount path {destination!r} must "
                                   "be absolute, such as /data")
    if os.path.normpath(destination) == "/":
        raise InvalidArgumentError(f"invalid volume specification: '{spec}': destination can't be '/'")
    return os.path.normpath(destination)


def parse_volume_flag(spec: str) -> dict:
    """Parse `-v SOURCE:DESTINATION[:MODES]`, `-v NAME:DESTINATION` or `-v DESTINATION`."""
    parts = spec.split(":")
    if len(parts) == 1:
        source, destination, modes = "", parts[0], ""
    elif len(parts) == 2:
        source, destination, modes = parts[0], parts[1], ""
    elif len(parts) == 3:
        source, destination, modes = parts
    else:
        raise InvalidArgumentError(f"invalid volume specification: '{spec}': expected SOURCE:DESTINATION[:MODE]")
    destination = _check_destination(destination, spec)

    mode_list = [mode for mode in modes.split(",") if mode]
    for mode in mode_list:
        if mode not in _VOLUME_MODES:
            raise InvalidArgumentError(f"invalid mode: {mode} in volume specification '{spec}': use ro, rw or nocopy")
    writable = "ro" not in mode_list

    if source.startswith("/"):
        return {"Type": "bind", "Source": os.path.normpath(source), "Destination": destination, "Mode": modes,
                "RW": writable, "CreateSource": True}
    if source:
        check_volume_name(source)
    return {"Type": "volume", "Name": source, "Source": "", "Destination": destination, "Mode": modes,
            "RW": writable, "NoCopy": "nocopy" in mode_list}


def _parse_bool(key: str, value: str, spec: str) -> bool:
    if value in ("", "1", "true", "True"):
        return True
    if value in ("0", "false", "False"):
        return False
    raise InvalidArgumentError(f"invalid value for {key} in --mount {spec!r}: {value!r} is not true or false")


def parse_mount_flag(spec: str) -> dict:
    """Parse `--mount type=bind|volume|tmpfs,source=...,target=...[,readonly][,...]`."""
    fields: dict[str, str] = {}
    for item in spec.split(","):
        key, has_value, value = item.partition("=")
        key = key.strip().lower()
        if not key:
            continue
        fields[key] = value if has_value else ""

    kind = fields.pop("type", "volume")
    source = fields.pop("source", None) or fields.pop("src", "")
    target = fields.pop("target", None) or fields.pop("destination", None) or fields.pop("dst", "")
    readonly = False
    for key in ("readonly", "ro"):
        if key in fields:
            readonly = _parse_bool(key, fields.pop(key), spec)
    if not target:
        raise InvalidArgumentError(f"invalid argument {spec!r} for --mount flag: target is required")
    target = _check_destination(target, spec)

    if kind == "bind":
        fields.pop("bind-propagation", None)
        _reject_unknown(fields, spec)
        if not source.startswith("/"):
            raise InvalidArgumentError(f'invalid mount config for type "bind": invalid source {source!r}: a bind '
                                       "source must be an absolute host path")
        if not os.path.exists(source):
            raise InvalidArgumentError(f'invalid mount config for type "bind": bind source path does not exist: {source}')
        return {"Type": "bind", "Source": os.path.normpath(source), "Destination": target, "Mode": "",
                "RW": not readonly}
    if kind == "volume":
        nocopy = _parse_bool("volume-nocopy", fields.pop("volume-nocopy"), spec) if "volume-nocopy" in fields else False
        _reject_unknown(fields, spec)
        if source:
            check_volume_name(source)
        return {"Type": "volume", "Name": source, "Source": "", "Destination": target, "Mode": "",
                "RW": not readonly, "NoCopy": nocopy}
    if kind == "tmpfs":
        if source:
            raise InvalidArgumentError(f'invalid mount config for type "tmpfs": source {source!r} is not allowed')
        options = []
        if "tmpfs-size" in fields:
            options.append(f"size={fields.pop('tmpfs-size')}")
        if "tmpfs-mode" in fields:
            options.append(f"mode={fields.pop('tmpfs-mode')}")
        _reject_unknown(fields, spec)
        return {"Type": "tmpfs", "Source": "", "Destination": target, "Mode": "", "RW": not readonly,
                "Options": ",".join(options)}
    raise InvalidArgumentError(f"invalid argument {spec!r} for --mount flag: type {kind!r} is not bind, volume or tmpfs")


def _reject_unknown(fields: dict, spec: str) -> None:
    if fields:
        raise InvalidArgumentError(f"invalid argument {spec!r} for --mount flag: unexpected key '{next(iter(fields))}'")


def parse_tmpfs_flag(spec: str) -> dict:
    """Parse `--tmpfs PATH[:OPTIONS]`, such as `--tmpfs /run:size=64m,exec`."""
    destination, _, options = spec.partition(":")
    destination = _check_destination(destination, spec)
    merged = f"{DEFAULT_TMPFS_OPTIONS},{options}" if options else DEFAULT_TMPFS_OPTIONS
    return {"Type": "tmpfs", "Source": "", "Destination": destination, "Mode": options, "RW": True,
            "Options": merged}


def prepare_mounts(engine, mounts: list[dict]) -> list[dict]:
    """Check the parsed mounts of a new container, create missing volumes and bind sources, fill in Source."""
    volumes = Volumes(engine.root)
    destinations = set()
    for mount in mounts:
        if mount["Destination"] in destinations:
            raise InvalidArgumentError(f"Duplicate mount point: {mount['Destination']}")
        destinations.add(mount["Destination"])

        if mount["Type"] == "volume":
            # A volume without a name is anonymous, with a random one.
            if not mount["Name"]:
                mount["Anonymous"] = True
            mount["Name"] = volumes.create(mount["Name"])
            mount["Source"] = volumes.path(mount["Name"])
            mount["Driver"] = "local"
        elif mount["Type"] == "bind" and mount.pop("CreateSource", False) and not os.path.exists(mount["Source"]):
            # -v creates a missing host directory; --mount type=bind rejects it.
            os.makedirs(mount["Source"], 0o755)
    return mounts


def runtime_mounts(mounts: list[dict]):
    """Return the runtime.Mount list for a record's mounts."""
    from layerlab.engine.runtime import Mount

    result = []
    for mount in mounts:
        readonly = not mount.get("RW", True)
        if mount["Type"] == "tmpfs":
            result.append(Mount("tmpfs", mount["Destination"], readonly=readonly, options=mount.get("Options", "")))
        else:
            copy_up = mount["Type"] == "volume" and not mount.get("NoCopy")
            result.append(Mount("bind", mount["Destination"], mount["Source"], readonly=readonly, copy_up=copy_up))
    return result


def remove_anonymous(engine, record) -> None:
    """Remove the anonymous volumes of a container that `run --rm` removed, as Docker does."""
    volumes = Volumes(engine.root)
    users = volume_users(engine)
    for mount in getattr(record, "mounts", None) or []:
        if mount.get("Anonymous") and volumes.exists(mount["Name"]) and not users.get(mount["Name"]):
            volumes.remove(mount["Name"], [])


def prune(engine) -> tuple[list[str], int]:
    """Remove every volume that no container uses; return the names and the bytes reclaimed."""
    volumes = Volumes(engine.root)
    users = volume_users(engine)
    removed, reclaimed = [], 0
    for name in volumes.names():
        if users.get(name):
            continue
        reclaimed += _tree_size(volumes.path(name))
        volumes.remove(name, [])
        removed.append(name)
    return removed, reclaimed


def _tree_size(path: str) -> int:
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                pass
    return total


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


__all__ = ["Volumes", "parse_mount_flag", "parse_tmpfs_flag", "parse_volume_flag", "prepare_mounts",
           "prune", "remove_anonymous", "runtime_mounts", "volume_users"]
