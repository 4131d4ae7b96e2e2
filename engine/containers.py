"""Container records: `containers/<id>/` with config, state and the writable layer.

`config.json` contains the record and its state and is replaced atomically
whenever the state changes. `upper/` and `work/` are the
overlayfs upper and work directories, and `hosts`, `hostname` and
`resolv.conf` are the files bind-mounted into the container's /etc.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import random
import shlex
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from layerlab.engine.errors import AlreadyExistsError, ConflictError, InvalidArgumentError, NotFoundError
from layerlab.engine.humanize import human_duration
from layerlab.engine.image import parse_rfc3339
from layerlab.engine.locking import file_lock
from layerlab.engine.rootless import remove_tree

log = logging.getLogger(__name__)

_ADJECTIVES = (
    "brave calm eager fervent gentle happy jolly keen lucid merry modest nifty "
    "patient quirky serene sharp sleepy stoic tender vibrant wise zealous bold clever"
).split()
_SURNAMES = (
    "babbage curie darwin euler fermat franklin galileo hopper hypatia johnson kepler "
    "lamarr lovelace meitner newton noether pascal ritchie shannon thompson turing wozniak"
).split()

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


@dataclass
class ContainerState:
    status: str = "created"  # created, running, exited
    pid: int = 0
    exit_code: int = 0
    started_at: str = ""
    finished_at: str = ""
    error: str = ""
    paused: bool = False  # set by `pause`, only while status is "running"


@dataclass
class ContainerRecord:
    id: str
    name: str
    image: str  # as the user wrote it
    image_id: str
    created: str
    args: list[str]  # entrypoint followed by command
    env: list[str]
    workdir: str
    user: str
    hostname: str
    network: str = "host"
    # Networks added with `network connect`, in connection order. Start attaches them as eth1, eth2, ...
    networks: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)  # published ports as "ip:hostport:containerport/proto"
    exposed_ports: list[str] = field(default_factory=list)  # the image's ExposedPorts keys, such as "80/tcp"
    lowerdirs: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    tty: bool = False
    interactive: bool = False
    stop_signal: str = ""  # --stop-signal; empty means the image's StopSignal, else SIGTERM
    stop_timeout: int | None = None  # --stop-timeout in seconds; None means the default of `stop`
    mounts: list[dict] = field(default_factory=list)  # `docker inspect`'s Mounts entries (see engine.volumes)
    # Docker's HostConfig fields that `run` sets: Privileged, ReadonlyRootfs,
    # Init, CapAdd, CapDrop, SecurityOpt, Memory, NanoCpus, PidsLimit, Ulimits.
    host_config: dict = field(default_factory=dict)
    state: ContainerState = field(default_factory=ContainerState)
    path: str = ""  # the container's folder; not saved

    @property
    def upperdir(self) -> str:
        return os.path.join(self.path, "upper")

    @property
    def workdir_overlay(self) -> str:
        return os.path.join(self.path, "work")

    @property
    def command(self) -> str:
        """Return the command as `ps` shows it: arguments quoted the way a shell would need them."""
        return shlex.join(self.args)

    def status_text(self, now: datetime.datetime | None = None) -> str:
        """Return the STATUS column of `ps`: `Up 3 seconds`, `Exited (0) 2 minutes ago`, `Created`."""
        now = now or datetime.datetime.now(datetime.timezone.utc)
        state = self.state
        if state.status == "running" and state.started_at:
            up = "Up " + human_duration((now - parse_rfc3339(state.started_at)).total_seconds())
            return up + " (Paused)" if state.paused else up
        if state.status == "exited" and state.finished_at:
            ago = human_duration((now - parse_rfc3339(state.finished_at)).total_seconds())
            return f"Exited ({state.exit_code}) {ago} ago"
        return state.status.capitalize()


class ContainerStore:
    """The `containers/` folder of a store."""

    def __init__(self, root: str, lock_dir: str):
        self.root = os.path.join(root, "containers")
        self.lock_path = os.path.join(lock_dir, "containers.lock")
        os.makedirs(self.root, exist_ok=True)

    def create(self, record: ContainerRecord) -> ContainerRecord:
        """Reserve the record's name and make its folder; the name is chosen if empty."""
        with file_lock(self.lock_path):
            taken = {existing.name for existing in self.list()}
            if not record.name:
                record.name = _random_name(taken)
            elif record.name in taken:
                owner = next(c for c in self.list() if c.name == record.name)
                raise AlreadyExistsError(
                    f'Conflict. The container name "/{record.name}" is already in use by container '
                    f'"{owner.id}". You have to remove (or rename) that container to be able to reuse that name.'
                )
            record.path = os.path.join(self.root, record.id)
            os.makedirs(os.path.join(record.path, "upper"), 0o755)
            os.makedirs(os.path.join(record.path, "work"), 0o700)
            self.save(record)
        return record

    def save(self, record: ContainerRecord) -> None:
        doc = asdict(record)
        doc.pop("path")
        # Only rename() changes a saved name and only change_networks() the saved networks,
        # so a monitor that saves its older copy of the record when the container exits keeps both.
        stored = self._load(record.path)
        if stored is not None:
            doc["name"] = record.name = stored.name
            doc["networks"] = record.networks = stored.networks
        _write_json(os.path.join(record.path, "config.json"), doc)

    def rename(self, record: ContainerRecord, new_name: str) -> None:
        """Give the container `new_name`, which no other container may have."""
        with file_lock(self.lock_path):
            owner = next((c for c in self.list() if c.name == new_name), None)
            if owner is not None:
                raise AlreadyExistsError(
                    f'Conflict. The container name "/{new_name}" is already in use by container '
                    f'"{owner.id}". You have to remove (or rename) that container to be able to reuse that name.'
                )
            current = self._load(record.path)
            if current is None:
                raise NotFoundError(f"No such container: {record.id}")
            current.name = record.name = new_name
            doc = asdict(current)
            doc.pop("path")
            _write_json(os.path.join(record.path, "config.json"), doc)

    def change_networks(self, record: ContainerRecord, change: Callable[[list[str]], list[str]]) -> list[str]:
        """Replace the saved `networks` with `change(saved networks)` under the lock and return the new list.

        `change` may raise to leave the record as it was.
        """
        with file_lock(self.lock_path):
            current = self._load(record.path)
            if current is None:
                raise NotFoundError(f"No such container: {record.id}")
            current.networks = record.networks = change(list(current.networks))
            doc = asdict(current)
            doc.pop("path")
            _write_json(os.path.join(record.path, "config.json"), doc)
        return record.networks

    def list(self) -> list[ContainerRecord]:
        records = []
        for name in os.listdir(self.root):
            record = self._load(os.path.join(self.root, name))
            if record is not None:
                records.append(record)
        records.sort(key=lambda record: record.created, reverse=True)
        return records

    def get(self, name_or_id: str) -> ContainerRecord:
        """Find a container by name, full ID or unique ID prefix, as Docker does."""
        records = self.list()
        for record in records:
            if record.id == name_or_id or record.name == name_or_id.lstrip("/"):
                return record
        matches = [record for record in records if record.id.startswith(name_or_id)] if name_or_id else []
        if len(matches) > 1:
            raise ConflictError(f"container ID prefix {name_or_id!r} matches {len(matches)} containers: give more digits")
        if not matches:
            raise NotFoundError(f"No such container: {name_or_id}")
        return matches[0]

    def remove(self, record: ContainerRecord) -> None:
        # Rename first so a crash half-way through rmtree leaves no half container listed.
        doomed = tempfile.mkdtemp(prefix=".remove-", dir=self.root)
        os.rename(record.path, os.path.join(doomed, record.id))
        remove_tree(doomed)

    def remove_partial(self) -> int:
        removed = 0
        for name in os.listdir(self.root):
            if name.startswith("."):
                remove_tree(os.path.join(self.root, name))
                removed += 1
        return removed

    def _load(self, path: str) -> ContainerRecord | None:
        if os.path.basename(path).startswith("."):
            return None
        try:
            with open(os.path.join(path, "config.json")) as config:
                doc = json.load(config)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except json.JSONDecodeError:
            log.warning("container folder %s has an unreadable config.json; run `layerlab fsck`", path)
            return None
        state = ContainerState(**doc.pop("state", {}))
        return ContainerRecord(**doc, state=state, path=path)


def new_container_id() -> str:
    return os.urandom(32).hex()


def check_container_name(name: str) -> str:
    if not name:
        return name
    if not (name[0].isalnum() and set(name) <= _NAME_CHARS):
        raise InvalidArgumentError(
            f'Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed'
        )
    return name


def _random_name(taken: set[str]) -> str:
    for _ in range(100):
        name = f"{random.choice(_ADJECTIVES)}_{random.choice(_SURNAMES)}"
        if name not in taken:
            return name
    return f"{random.choice(_ADJECTIVES)}_{random.choice(_SURNAMES)}{random.randint(1, 99)}"


def _write_json(path: str, doc: dict) -> None:
    directory = os.path.dirname(path)
    fd, tmp_path = tempfile.mkstemp(prefix=".write-", dir=directory)
    with os.fdopen(fd, "w") as tmp:
        json.dump(doc, tmp, indent=1)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.rename(tmp_path, path)
