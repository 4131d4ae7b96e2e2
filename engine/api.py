"""The `Engine`: the one Python API that the CLI and the kernel call."""

from __future__ import annotations

import datetime
import logging
import os

from layerlab.engine.containers import ContainerRecord, ContainerStore
from layerlab.engine.digest import short_id
from layerlab.engine.errors import ConflictError, InvalidArgumentError
from layerlab.engine.image import Image, parse_rfc3339
from layerlab.engine.images import ImageIndex
from layerlab.engine.paths import default_root
from layerlab.engine.reference import Reference
from layerlab.engine.snapshots import Snapshots
from layerlab.engine.store import Store
from layerlab.engine.views import (
    ContainerRow,
    ContainersView,
    HistoryRow,
    HistoryView,
    ImageRow,
    ImagesView,
    LayerRow,
    LayerStackView,
)

log = logging.getLogger(__name__)


class Engine:
    """An image store with its snapshots and containers, rooted at one folder."""

    def __init__(self, root: str | None = None):
        self.root = root or default_root()
        os.makedirs(self.root, exist_ok=True)
        self.store = Store(self.root)
        self.images = ImageIndex(self.store)
        self.rootless = os.geteuid() != 0
        self.snapshots = Snapshots(self.store, userns=self.rootless)
        self.containers = ContainerStore(self.root, self.store.lock_dir)

    # Images

    def image(self, name: str) -> Image:
        return self.images.resolve(name)

    def list_images(self, *, repository: str | None = None, quiet=False, no_trunc=False) -> ImagesView:
        rows = []
        for entry in reversed(self.images.entries()):
            image_size = sum(layer.size for layer in self._manifest_layers(entry.descriptor.digest))
            created = self._created(entry.image_id)
            if entry.reference is None:
                repo, tag = "<none>", "<none>"
            else:
                repo, tag = entry.reference.familiar_name, entry.reference.tag or "<none>"
            if repository and repo != repository and repo != _familiar_or_self(repository):
                continue
            rows.append(ImageRow(repo, tag, entry.image_id, created, image_size))
        rows.sort(key=lambda row: row.created, reverse=True)
        return ImagesView(rows, quiet=quiet, no_trunc=no_trunc)

    def tag(self, source: str, target: str) -> None:
        reference = Reference.parse(target)
        if reference.digest:
            # A digest names one manifest, which a tag cannot change, so Docker rejects this too.
            raise InvalidArgumentError(f"refusing to create a tag with a digest reference: {target}")
        image = self.image(source)
        self.images.tag(image, reference, parent=self.images.parent_of(image.id))

    def remove_image(self, name: str, *, force: bool = False) -> list[str]:
        """Untag `name`, and delete the image when no other name points at it; return Docker's lines.

        The conflict rules follow Docker 20.10 `ImageDelete`. Child images and running
        containers are hard conflicts that -f does not override. Removing the last tag of
        such an image with -f only untags it, and naming it by ID fails.
        """
        image = self.image(name)
        references = self.images.references_to(image.id)
        bare = name.removeprefix("sha256:")
        by_id = bool(bare) and image.id.removeprefix("sha256:").startswith(bare)
        if by_id:
            return self._remove_image_by_id(image, references, force)
        return self._remove_image_reference(name, image, references, force)

    def _remove_image_reference(self, name: str, image: Image, references: list[Reference], force: bool) -> list[str]:
        if not force and len(references) <= 1:
            users = [c for c in self.containers.list() if c.image_id == image.id]
            if users:
                # Untagging would leave a dangling image under a container, so Docker requires -f.
                raise ConflictError(
                    f"conflict: unable to remove repository reference \"{name}\" (must force) - container "
                    f"{short_id(users[0].id)} is using its referenced image {short_id(image.id)}"
                )

        parent = self.images.parent_of(image.id)
        reference = Reference.parse(name)
        self.images.untag(reference)
        lines = [f"Untagged: {reference.familiar}"]
        if self.images.references_to(image.id):
            return lines

        # After the last tag goes, Docker deletes the image unless something still needs it,
        # and then it keeps the image untagged without reporting the conflict.
        if self._image_delete_conflict(image.id, soft=not force, active_references=False):
            self.images.add_untagged(image, parent=parent)
            return lines
        self.images.forget_image(image.id)
        lines.append(f"Deleted: {image.id}")
        return lines

    def _remove_image_by_id(self, image: Image, references: list[Reference], force: bool) -> list[str]:
        lines = []
        if len(references) == 1:
            conflict = self._image_delete_conflict(image.id, soft=not force, active_references=False)
            if conflict:
                raise ConflictError(conflict)
            self.images.untag(references[0])
            lines.append(f"Untagged: {references[0].familiar}")

        conflict = self._image_delete_conflict(image.id, soft=not force, active_references=not force)
        if conflict:
            raise ConflictError(conflict)
        for reference in self.images.references_to(image.id):
            self.images.untag(reference)
            lines.append(f"Untagged: {reference.familiar}")
        self.images.forget_image(image.id)
        lines.append(f"Deleted: {image.id}")
        return lines

    def _image_delete_conflict(self, image_id: str, *, soft: bool, active_references: bool) -> str | None:
        """Return Docker's conflict message for deleting `image_id`, or None when nothing blocks it.

        Hard conflicts (child images, running containers) are always checked. `soft` adds
        stopped containers, and `active_references` adds remaining tags, which -f overrides.
        """
        prefix = f"conflict: unable to delete {short_id(image_id)}"
        if self.images.has_dependent_children(image_id):
            return f"{prefix} (cannot be forced) - image has dependent child images"

        users = [c for c in self.containers.list() if c.image_id == image_id]
        for record in users:
            self._refresh_state(record)
        # Docker counts a paused container as running, and layerlab keeps status "running" while paused.
        running = [c for c in users if c.state.status == "running"]
        stopped = [c for c in users if c.state.status != "running"]
        if running:
            return f"{prefix} (cannot be forced) - image is being used by running container {short_id(running[0].id)}"
        if active_references and self.images.references_to(image_id):
            return f"{prefix} (must be forced) - image is referenced in multiple repositories"
        if soft and stopped:
            return f"{prefix} (must be forced) - image is being used by stopped container {short_id(stopped[0].id)}"
        return None

    def history(self, name: str, *, quiet=False, no_trunc=False, human=True) -> HistoryView:
        image = self.image(name)
        layers = iter(image.layers)
        rows = []
        for entry in image.history:
            size = 0 if entry.get("empty_layer") else next(layers).size
            created = parse_rfc3339(entry["created"]) if entry.get("created") else None
            rows.append(HistoryRow(None, created, entry.get("created_by", ""), size, entry.get("comment", "")))
        rows.reverse()

        # Every local step of a build is an image of its own, so walk the parent links to name the rows.
        image_id: str | None = image.id
        for row in rows:
            if image_id is None:
                break
            row.image_id = image_id
            image_id = self.images.parent_of(image_id)
        return HistoryView(rows, quiet=quiet, no_trunc=no_trunc, human=human)

    def layer_stack(self, name: str, cached_steps: dict[str, bool] | None = None) -> LayerStackView:
        image = self.image(name)
        layered = [entry for entry in image.history if not entry.get("empty_layer")]
        layers = []
        for index, layer in enumerate(image.layers):
            created_by = layered[index].get("created_by", "") if index < len(layered) else ""
            cached = (cached_steps or {}).get(layer.digest)
            layers.append(LayerRow(layer.digest, layer.size, created_by, cached))
        return LayerStackView(name, image.id, layers)

    def inspect_image(self, name: str) -> dict:
        image = self.image(name)
        references = self.images.references_to(image.id)
        return {
            "Id": image.id,
            "RepoTags": [ref.familiar for ref in references],
            "RepoDigests": [_familiar_digest(entry) for entry in self.images.repo_digests(image.id)],
            "Parent": self.images.parent_of(image.id) or "",
            "Comment": (image.history[-1].get("comment", "") if image.history else ""),
            "Created": image.created,
            "Author": image.config.get("author", ""),
            "Config": _docker_image_config(image.settings),
            "Architecture": image.config.get("architecture", ""),
            "Os": image.config.get("os", ""),
            "Size": image.size,
            "RootFS": {"Type": "layers", "Layers": image.diff_ids},
            "Metadata": {"LastTagTime": ""},
        }

    # Containers

    def container(self, name_or_id: str) -> ContainerRecord:
        return self.containers.get(name_or_id)

    def list_containers(self, *, all=False, quiet=False, no_trunc=False) -> ContainersView:
        rows = []
        for record in self.containers.list():
            self._refresh_state(record)
            if not all and record.state.status != "running":
                continue
            created = parse_rfc3339(record.created)
            ports = ""
            if (record.ports or record.exposed_ports) and record.state.status == "running":
                from layerlab.engine.network import ports_text

                ports = ports_text(record)
            rows.append(ContainerRow(record.id, record.image, record.command, created, record.status_text(), ports, record.name))
        return ContainersView(rows, quiet=quiet, no_trunc=no_trunc)

    def inspect_container(self, name_or_id: str) -> dict:
        record = self.container(name_or_id)
        self._refresh_state(record)
        state = record.state
        return {
            "Id": record.id,
            "Name": "/" + record.name,
            "Created": record.created,
            "Path": record.args[0] if record.args else "",
            "Args": record.args[1:],
            "State": {
                "Status": state.status,
                "Running": state.status == "running",
                "Pid": state.pid,
                "ExitCode": state.exit_code,
                "Error": state.error,
                "StartedAt": state.started_at,
                "FinishedAt": state.finished_at,
            },
            "Image": record.image_id,
            "Config": {
                "Hostname": record.hostname,
                "User": record.user,
                "Env": record.env,
                "WorkingDir": record.workdir,
                "Image": record.image,
                "Labels": record.labels,
                "Tty": record.tty,
                "OpenStdin": record.interactive,
                "StopSignal": record.stop_signal or None,
                "StopTimeout": record.stop_timeout,
            },
            "HostConfig": dict(record.host_config),
            "NetworkSettings": {"Networks": self._container_networks(record)},
            "Mounts": [{key: value for key, value in mount.items() if key not in ("Anonymous", "NoCopy", "Options")}
                       for mount in record.mounts],
            "GraphDriver": {"Name": "overlay", "Data": {"UpperDir": record.upperdir, "LowerDir": ":".join(record.lowerdirs)}},
        }

    def _container_networks(self, record: ContainerRecord) -> dict:
        from layerlab.engine.network import USER_MODES, network_store
        from layerlab.engine.network.views import container_networks

        without_records = record.network in ("host", "none") or record.network in USER_MODES
        networks = None if without_records or record.network.startswith("container:") else network_store(self)
        return container_networks(networks, record, record.state.status == "running")

    def remove_container(self, name_or_id: str, *, force: bool = False) -> str:
        from layerlab.engine import control

        control.remove(self, self.container(name_or_id), force=force)
        return name_or_id

    def _refresh_state(self, record: ContainerRecord) -> None:
        """Mark a container exited if its process and its monitor are both gone."""
        from layerlab.engine import control

        control.refresh_state(self, record)

    # Detached containers

    def run_detached(self, record: ContainerRecord, *, remove: bool = False) -> int:
        """Start a created container under its own monitor; return its PID once its program runs."""
        from layerlab.engine import monitor

        return monitor.launch(self, record, remove=remove)

    def start_container(self, name_or_id: str) -> ContainerRecord:
        from layerlab.engine import control

        record = self.container(name_or_id)
        control.start(self, record)
        return record

    def stop_container(self, name_or_id: str, *, timeout: float | None = None) -> None:
        from layerlab.engine import control

        control.stop(self, self.container(name_or_id), timeout)

    def kill_container(self, name_or_id: str, signal: str = "KILL") -> None:
        from layerlab.engine import control

        control.send_signal(self, self.container(name_or_id), control.parse_signal(signal))

    def restart_container(self, name_or_id: str, *, timeout: float | None = None) -> None:
        from layerlab.engine import control

        control.restart(self, self.container(name_or_id), timeout)

    def wait_container(self, name_or_id: str) -> int:
        from layerlab.engine import control

        return control.wait(self, self.container(name_or_id))

    def container_logs(self, name_or_id: str, *, follow: bool = False, tail: int | None = None):
        """Return the container's logged lines (`LogEntry`); with follow, an iterator until it stops."""
        from layerlab.engine import control, logs

        record = self.container(name_or_id)
        if not follow:
            return logs.read_entries(record.path, tail)
        return logs.follow_entries(record.path, tail, lambda: control.is_running(self, record))

    def exec_in_container(self, name_or_id: str, args: list[str], *, env: list[str] = (), user: str | None = None,
                          workdir: str = "", privileged: bool = False, stdio=(None, None, None), tty: bool = False,
                          interactive: bool = False, detach: bool = False) -> int:
        """Run `args` inside a running container and return its exit code, as `docker exec` does.

        See `container_exec.run` for `tty`, `interactive` and `detach`;
        a detached exec returns 0 once the program has started.
        """
        from layerlab.engine import container_exec

        return container_exec.run(self, self.container(name_or_id), args, env=list(env), user=user,
                                  workdir=workdir, privileged=privileged, stdio=stdio, tty=tty,
                                  interactive=interactive, detach=detach)

    def top(self, name_or_id: str):
        """Return a `ProcessesView` of the container's processes, with host PIDs as `docker top` shows."""
        from layerlab.engine import control

        return control.processes(self, self.container(name_or_id))

    # Helpers

    def _manifest_layers(self, manifest_digest: str):
        from layerlab.engine.image import load_image

        return load_image(self.store, manifest_digest).layers

    def _created(self, image_id: str) -> datetime.datetime:
        created = self.store.read_json(image_id).get("created")
        if created:
            return parse_rfc3339(created)
        return datetime.datetime.fromtimestamp(0, datetime.timezone.utc)


def _familiar_digest(entry: str) -> str:
    """Return a recorded `name@digest` as Docker prints it: `busybox@sha256:...`."""
    name, _, digest = entry.partition("@")
    return f"{_familiar_or_self(name)}@{digest}"


def _familiar_or_self(repository: str) -> str:
    try:
        return Reference.parse(repository).familiar_name
    except InvalidArgumentError:
        return repository


# The fields Docker's image inspect always prints in Config, even when unset.
_IMAGE_CONFIG_DEFAULTS = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
    "Cmd": None, "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
    "OnBuild": None, "Labels": None,
}


def _docker_image_config(settings: dict) -> dict:
    """Return an image's Config as `docker image inspect` shows it, unset fields included."""
    config = dict(_IMAGE_CONFIG_DEFAULTS)
    config.update(settings)
    return config
