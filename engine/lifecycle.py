"""Creating, running, diffing and committing containers."""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass, field

from layerlab.engine.containers import ContainerRecord, check_container_name, new_container_id
from layerlab.engine.errors import ContainerError, InvalidArgumentError
from layerlab.engine.image import DEFAULT_PATH, Image, ImageDraft, write_image
from layerlab.engine.reference import Reference
from layerlab.engine.rootless import changes_as_root, write_layer_as_root
from layerlab.engine.views import Change, DiffView

log = logging.getLogger(__name__)

HOSTS_TEMPLATE = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""

# Files and folders that every container needs as mount points. They live in
# a shared read-only "init" layer under the container's own layer, as in
# Docker, so they never show up in `diff` or in a committed image.
_INIT_DIRS = ("dev", "proc", "sys", "etc")
_INIT_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf")


@dataclass
class RunOptions:
    """The options of one `run`, after flag parsing."""

    image: str
    command: list[str] = field(default_factory=list)
    name: str = ""
    remove: bool = False
    env: list[str] = field(default_factory=list)
    workdir: str = ""
    user: str | None = None
    entrypoint: str | None = None
    hostname: str = ""
    network: str = ""  # "" picks default_network()
    publish: list[str] = field(default_factory=list)  # -p values
    publish_all: bool = False  # -P
    env_files: list[str] = field(default_factory=list)  # --env-file paths, applied before env
    labels: list[str] = field(default_factory=list)  # -l KEY=value or KEY
    mounts: list[dict] = field(default_factory=list)  # parsed -v, --mount and --tmpfs (engine.volumes)
    tty: bool = False
    interactive: bool = False
    readonly_rootfs: bool = False
    init: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    security_opt: list[str] = field(default_factory=list)
    memory: int = 0  # bytes
    nano_cpus: int = 0
    pids_limit: int = 0
    ulimits: dict[str, list[int]] = field(default_factory=dict)  # name -> [soft, hard]
    stop_signal: str = ""
    stop_timeout: int | None = None
    restart_policy: dict = field(default_factory=lambda: {"Name": "no", "MaximumRetryCount": 0})  # --restart


def process_args(settings: dict, command: list[str], entrypoint: str | None) -> list[str]:
    """Combine ENTRYPOINT and CMD as `docker run` does: `--entrypoint` clears the image's CMD."""
    if entrypoint is not None:
        head = [entrypoint] if entrypoint else []
        return head + list(command)
    head = list(settings.get("Entrypoint") or [])
    tail = list(command) if command else list(settings.get("Cmd") or [])
    return head + tail


def merge_env(image_env: list[str], overrides: list[str]) -> list[str]:
    """Apply `-e KEY=value` and `-e KEY` (taken from our own environment) over the image's Env."""
    merged: dict[str, str] = {}
    for entry in image_env:
        key, _, value = entry.partition("=")
        merged[key] = value
    for entry in overrides:
        key, has_value, value = entry.partition("=")
        if not key:
            raise InvalidArgumentError(f"invalid environment variable {entry!r}: expected KEY=value or KEY")
        if has_value:
            merged[key] = value
        elif key in os.environ:
            merged[key] = os.environ[key]
        else:
            merged.pop(key, None)
    return [f"{key}={value}" for key, value in merged.items()]


def init_layer(root: str) -> str:
    """Return the shared init layer's folder, making it on first use."""
    path = os.path.join(root, "snapshots", "init", "fs")
    if os.path.isdir(path):
        return path
    staging = f"{path}.{os.getpid()}"
    for name in _INIT_DIRS:
        os.makedirs(os.path.join(staging, name), 0o755, exist_ok=True)
    for name in _INIT_FILES:
        open(os.path.join(staging, name), "a").close()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        os.rename(staging, path)
    except OSError:
        # Another process made it first; theirs is identical.
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return path


def write_etc_files(directory: str, hostname: str) -> dict[str, str]:
    """Write the container's hosts, hostname and resolv.conf; return mount target -> host path."""
    files = {
        "/etc/hosts": HOSTS_TEMPLATE,
        "/etc/hostname": hostname + "\n",
        "/etc/resolv.conf": _host_resolv_conf(),
    }
    mapping = {}
    for target, content in files.items():
        path = os.path.join(directory, os.path.basename(target))
        with open(path, "w") as handle:
            handle.write(content)
        mapping[target] = path
    return mapping


def _host_resolv_conf() -> str:
    try:
        with open("/etc/resolv.conf") as handle:
            return handle.read()
    except OSError:
        return ""


def default_network() -> str:
    """Return the network mode of a `run` without --network: bridge as root, slirp4netns or pasta when rootless.

    A bridge needs veth pairs in the host's namespace, which an ordinary user
    cannot create, so rootless containers get user-mode networking, or the
    host's network when neither helper works.
    """
    if os.geteuid() == 0:
        return "bridge"
    from layerlab.engine.network.usermode import available_mode

    mode = available_mode()
    if mode is None:
        log.warning("rootless: neither slirp4netns nor pasta works here (both need the programs and a /dev/net/tun "
                    "that this user can open); the container uses the host's network")
        return "host"
    return mode


def new_record(engine, image: Image, options: RunOptions) -> ContainerRecord:
    settings = image.settings
    args = process_args(settings, options.command, options.entrypoint)
    if not args and options.entrypoint == "":
        raise InvalidArgumentError("No command specified: --entrypoint '' clears the image's ENTRYPOINT and CMD, "
                                   "so give a command after the image name")
    if not args:
        raise InvalidArgumentError(
            f"No command specified: image {options.image} has no CMD or ENTRYPOINT, so give one after the image name"
        )
    from layerlab.engine import run_options, volumes

    run_options.check_workdir_and_hostname(options.workdir, options.hostname)

    env = merge_env(settings.get("Env") or [f"PATH={DEFAULT_PATH}"],
                    run_options.read_env_files(options.env_files) + list(options.env))
    host_config = run_options.host_config(options)
    ports = []
    options.network = options.network or default_network()
    if options.network not in ("host", "none"):
        from layerlab.engine import network

        options.network = network.check_mode(engine, options.network)
    if options.publish or options.publish_all:
        from layerlab.engine import network

        bindings = network.publish_bindings(engine, options.network, options.publish, options.publish_all, settings)
        ports = [binding.to_text() for binding in bindings]
    container_id = new_container_id()
    record = ContainerRecord(
        id=container_id,
        name=check_container_name(options.name),
        image=options.image,
        image_id=image.id,
        created=_now(),
        args=args,
        env=env,
        workdir=options.workdir or settings.get("WorkingDir") or "/",
        user=settings.get("User", "") if options.user is None else options.user,
        hostname=options.hostname or container_id[:12],
        network=options.network,
        ports=ports,
        exposed_ports=sorted(settings.get("ExposedPorts") or {}),
        lowerdirs=[init_layer(engine.root)] + engine.snapshots.lowerdirs(image),
        labels={**(settings.get("Labels") or {}), **run_options.parse_labels(options.labels)},
        tty=options.tty,
        interactive=options.interactive,
        stop_signal=options.stop_signal,
        stop_timeout=options.stop_timeout,
        mounts=volumes.prepare_mounts(engine, options.mounts),
        host_config=host_config,
    )
    return engine.containers.create(record)


def container_spec(record: ContainerRecord):
    from layerlab.engine.runtime import ContainerSpec, ProcessSpec, RootfsSpec

    from layerlab.engine import run_options

    etc_files = write_etc_files(record.path, record.hostname)
    rootfs = RootfsSpec(list(record.lowerdirs), record.upperdir, record.workdir_overlay)
    process = ProcessSpec(list(record.args), list(record.env), record.workdir, record.user, terminal=record.tty)
    spec = ContainerSpec(record.id, rootfs, process, record.hostname, network=record.network, etc_files=etc_files)
    run_options.apply_host_config(spec, record)
    return spec


def run_foreground(engine, record: ContainerRecord, stdout=None, stderr=None, stdin=None) -> int:
    """Start the container, wait for it and record how it ended; return its exit code.

    stdin, stdout and stderr are file descriptors, None for ours. With
    record.tty they are copied to and from the container's terminal.
    """
    spec = container_spec(record)
    attachment = attach_network(engine, record, spec)
    try:
        return _start_and_wait(engine, record, spec, stdout, stderr, stdin)
    finally:
        if attachment is not None:
            attachment.teardown()


def attach_network(engine, record: ContainerRecord, spec):
    """Fill in the spec's network setup; return the attachment to tear down at exit (None for host and none)."""
    if record.network in ("host", "none"):
        return None  # keeps these modes free of the network package and pyroute2
    from layerlab.engine import network

    return network.attach(engine, record, spec)


def _start_and_wait(engine, record: ContainerRecord, spec, stdout, stderr, stdin=None) -> int:
    from layerlab.engine import runtime

    try:
        # A foreground container dies with the command that waits for it, even one killed with SIGKILL.
        container = runtime.start(spec, stdin=stdin, stdout=stdout, stderr=stderr, kill_with_parent=True)
    except ContainerError as error:
        _record_exit(engine, record, getattr(error, "exit_code", 125) or 125, str(error))
        raise

    record.state.status = "running"
    record.state.pid = container.pid
    record.state.started_at = _now()
    engine.containers.save(record)
    try:
        if container.terminal_fd is not None:
            from layerlab.engine.runtime import terminal

            terminal.relay_session(container.terminal_fd, stdin, stdout, record.interactive)
        status = container.wait()
    except BaseException:
        container.kill(9)
        status = container.wait()
        _record_exit(engine, record, status, "")
        raise
    _record_exit(engine, record, status, "")
    return status


def _record_exit(engine, record: ContainerRecord, status: int, error: str) -> None:
    record.state.status = "exited"
    record.state.exit_code = status
    record.state.finished_at = _now()
    record.state.error = error
    record.state.pid = 0
    engine.containers.save(record)


def diff(record: ContainerRecord) -> DiffView:
    lowerdirs = record.lowerdirs[1:] if record.lowerdirs else []
    found = changes_as_root(record.upperdir, lowerdirs)
    return DiffView([Change(change.kind, change.path) for change in found])


def commit(engine, record: ContainerRecord, reference: str | None, *, message: str = "", author: str = "",
           changes: list[dict] | None = None) -> Image:
    """Turn the container's upper dir into a layer on top of its image; tag it if asked."""
    with engine.store.gc_shared():
        return _commit(engine, record, reference, message=message, author=author, changes=changes)


def _commit(engine, record: ContainerRecord, reference: str | None, *, message: str, author: str,
            changes: list[dict] | None) -> Image:
    base = engine.images.resolve(record.image_id)
    draft = ImageDraft.from_image(base)

    with engine.store.blob_writer(hashed_by_caller=True) as writer:
        info = write_layer_as_root(record.upperdir, writer)
        writer.commit(info.digest)
    draft.add_layer(info.digest, info.size)
    draft.add_history(" ".join(record.args), empty_layer=False, comment=message, author=author)
    if author:
        draft.config["author"] = author
    for change in changes or []:
        draft.settings.update(change)

    image = write_image(engine.store, draft)
    if reference:
        engine.images.tag(image, Reference.parse(reference), parent=base.id)
    else:
        engine.images.add_untagged(image, parent=base.id)
    return image


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


