"""Container networking: bridge networks with NAT, published ports and name resolution between peers.

Importing this package is cheap: pyroute2 is imported (by `netlink`) only
when a container is actually attached to a bridge or links are cleaned up.

Network modes, as in `docker run --network`: `host`, `none`, `bridge` (the
default network, on a bridge of the store's own), the name of a network
made with `network create`, `container:NAME`, which shares another
container's network namespace, and for rootless containers `slirp4netns`
and `pasta` (user-mode networking, see `usermode`).
"""

from __future__ import annotations

import logging
import os

from layerlab.engine import procfs
from layerlab.engine.errors import ConflictError, InvalidArgumentError, NotFoundError
from layerlab.engine.network.attach import Attachment, detach_container
from layerlab.engine.network.ports import PortBinding, exposed_ports, parse_publish, ports_column, resolve_host_ports
from layerlab.engine.network.records import DEFAULT_NETWORK, SPECIAL_MODES, Endpoint, Network, NetworkStore
from layerlab.engine.network.usermode import USER_MODES, UserModeNetwork, available_mode

log = logging.getLogger(__name__)


def network_store(engine) -> NetworkStore:
    return NetworkStore(engine.root, engine.store.lock_dir)


def check_mode(engine, mode: str) -> str:
    """Validate a --network value and return it; a named network must exist (`bridge` always does)."""
    if mode in SPECIAL_MODES or mode in USER_MODES:
        return mode
    if mode == DEFAULT_NETWORK:
        if os.geteuid() != 0:
            raise InvalidArgumentError(
                "network bridge needs root (bridges and veth pairs); rootless containers use "
                "--network slirp4netns or pasta (the default when installed), host or none"
            )
        return mode
    if mode.startswith("container:"):
        if not mode.partition(":")[2]:
            raise InvalidArgumentError("--network container: needs a container name, as in container:web")
        return mode
    return network_store(engine).get(mode).name


def publish_bindings(engine, mode: str, publish: list[str], publish_all: bool, settings: dict) -> list[PortBinding]:
    """Turn -p values and -P into bindings with concrete host ports, as `docker run` does at start."""
    requested: list[PortBinding] = []
    for text in publish:
        requested += parse_publish(text)
    if publish_all:
        given = {(b.container_port, b.protocol) for b in requested}
        requested += [b for b in exposed_ports(settings) if (b.container_port, b.protocol) not in given]
    if not requested:
        return []
    if mode in SPECIAL_MODES or mode.startswith("container:"):
        # Docker prints the same warning and drops the ports in these modes.
        log.warning("published ports are discarded when using the %s network mode", mode)
        return []
    return resolve_host_ports(requested, published_by_running(engine))


def release(engine, record) -> None:
    """Release the network of a container whose monitor or launcher died before its teardown.

    Does nothing for modes without a bridge, when no network still has an
    address for the container, or while its process or launcher still runs
    (that launcher tears down itself).
    """
    if record.network in SPECIAL_MODES or record.network in USER_MODES or record.network.startswith("container:"):
        return
    networks = network_store(engine)
    endpoints = [network.endpoints[record.id] for network in networks.list() if record.id in network.endpoints]
    if not endpoints or any(endpoint.alive() for endpoint in endpoints):
        return
    from layerlab.engine.network.manage import release_container

    release_container(networks, record.id)
    log.info("released the network of container %s, whose monitor or launcher died", record.id[:12])


def published_by_running(engine) -> set[tuple[str, int]]:
    """Return the (protocol, host port) pairs that running containers publish."""
    taken = set()
    for record in engine.containers.list():
        if record.state.status == "running" and procfs.is_alive(record.state.pid):
            for text in getattr(record, "ports", []) or []:
                for binding in parse_publish(text):
                    taken.add((binding.protocol, binding.host_port))
    return taken


def attach(engine, record, spec) -> Attachment | None:
    """Connect the container of `record` to its network by filling in `spec`; return what teardown needs.

    Returns None for host and none, which need nothing at start or exit.
    """
    mode = record.network
    if mode in SPECIAL_MODES:
        return None
    if mode.startswith("container:"):
        other = engine.container(mode.partition(":")[2])
        engine._refresh_state(other)
        if other.state.status != "running":
            raise ConflictError(f"cannot join the network of container {other.name}: it is not running; start it first")
        spec.netns_path = f"/proc/{other.state.pid}/ns/net"
        for name in ("hosts", "resolv.conf"):
            spec.etc_files[f"/etc/{name}"] = os.path.join(other.path, name)
        return None

    ports = [binding for text in getattr(record, "ports", []) or [] for binding in parse_publish(text)]
    if mode in USER_MODES:
        # The helper binds the published ports itself, so it holds them as a reservation would.
        helper = UserModeNetwork(mode, record.id, spec.etc_files, ports)
        spec.network = mode
        spec.network_setup = helper.setup
        return helper
    networks = network_store(engine)
    if ports:
        from layerlab.engine.network.manage import release_dead_containers

        release_dead_containers(networks)
    attachment = Attachment(networks, record.id, record.name, record.hostname, spec.etc_files, ports)
    # This process (the monitor, or the launcher of a foreground run) holds the ports until teardown.
    attachment.reserve_ports()
    try:
        attachment.prepare(mode)
        for name in record.networks:
            _prepare_connected(attachment, record, name)
    except BaseException:
        attachment.teardown()
        raise
    spec.network = mode
    spec.network_setup = attachment.setup
    return attachment


def _prepare_connected(attachment: Attachment, record, network_name: str) -> None:
    """Prepare a network that `network connect` added while the container was stopped or before a restart."""
    try:
        attachment.prepare(network_name)
    except NotFoundError:
        raise NotFoundError(
            f"network {network_name} not found, but container {record.name} is connected to it. Create the "
            f"network again or run `layerlab network disconnect {network_name} {record.name}`"
        ) from None


def attach_build(engine, spec) -> Attachment | None:
    """Connect a build step's container when the build asked for a bridge network (`build --network bridge`)."""
    if spec.network in SPECIAL_MODES:
        return None
    if spec.network in USER_MODES:
        helper = UserModeNetwork(spec.network, spec.id, spec.etc_files, [])
        spec.network_setup = helper.setup
        return helper
    attachment = Attachment(network_store(engine), spec.id, "", spec.hostname, spec.etc_files)
    attachment.prepare(check_mode(engine, spec.network))
    spec.network_setup = attachment.setup
    return attachment


def port_lines(record) -> list[str]:
    """Return `layerlab port`'s lines: `80/tcp -> 0.0.0.0:8080`."""
    lines = []
    for text in getattr(record, "ports", []) or []:
        for binding in parse_publish(text):
            lines.append(f"{binding.container_port}/{binding.protocol} -> {binding.host_ip}:{binding.host_port}")
    return lines


def ports_text(record) -> str:
    """Return the PORTS column of `ps` for a container record."""
    bindings = [binding for text in getattr(record, "ports", []) or [] for binding in parse_publish(text)]
    # Docker lists exposed ports only where the container has its own network namespace.
    private = record.network not in SPECIAL_MODES and not record.network.startswith("container:")
    exposed = getattr(record, "exposed_ports", []) if private else []
    return ports_column(bindings, exposed)


__all__ = [
    "Attachment", "DEFAULT_NETWORK", "Endpoint", "Network", "NetworkStore", "PortBinding",
    "attach", "attach_build", "check_mode", "detach_container", "network_store", "port_lines",
    "ports_text", "publish_bindings", "release", "USER_MODES", "available_mode",
]
