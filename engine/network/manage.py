"""Network commands on the engine: remove, prune, connect, disconnect, and the repair of crash leftovers.

A launcher killed with SIGKILL cannot tear down: its container's address
stays allocated and its port rules stay in the kernel (the veth pair goes
with the container's namespace). `repair` finds such leftovers by the
endpoint's PIDs, the rules' `layerlab` comments and the link names.
"""

from __future__ import annotations

import logging
import os
import re
import shutil

from layerlab.engine.errors import AlreadyExistsError, ConflictError, ContainerError, InvalidArgumentError
from layerlab.engine.network import iptables
from layerlab.engine.network.attach import connect_link, detach_container, hosts_for, host_veth_name, refresh_hosts
from layerlab.engine.network.etcfiles import container_file, rewrite_in_place
from layerlab.engine.network.records import DEFAULT_NETWORK, Endpoint, Network, NetworkStore
from layerlab.engine.network.usermode import USER_MODES

log = logging.getLogger(__name__)

_VETH = re.compile(r"^veth[0-9a-f]{7}[0-9]$")


def remove_network(networks: NetworkStore, network: Network) -> None:
    """Delete the record, then the bridge and the network's rules."""
    if network.name != DEFAULT_NETWORK:
        _drop_dead_endpoints(networks, network)
    networks.remove(networks.get(network.name))
    if os.geteuid() != 0:
        # Attachment.prepare rejects bridge networks without root, so no bridge or rule can exist.
        log.info("removed network %s", network.name)
        return
    _delete_bridge(network.bridge)
    prefix = iptables.bridge_comment(network.bridge) + " "
    iptables.remove(lambda comment: comment.startswith(prefix))
    log.info("removed network %s and bridge %s", network.name, network.bridge)


def release_default_bridge(networks: NetworkStore) -> bool:
    """Delete the default network's bridge and rules while no running container is on it; return True if deleted.

    The next container on the default network makes them again, so a store
    that `system prune` left can be deleted without leaving a bridge and
    NAT rules on the host. The record keeps the subnet.
    """
    if os.geteuid() != 0:
        return False
    network = next((n for n in networks.list() if n.name == DEFAULT_NETWORK), None)
    if network is None or any(endpoint.alive() for endpoint in network.endpoints.values()):
        return False
    if network.bridge not in set(_link_names()):
        return False
    _delete_bridge(network.bridge)
    prefix = iptables.bridge_comment(network.bridge) + " "
    iptables.remove(lambda comment: comment.startswith(prefix))
    log.info("deleted the idle default bridge %s", network.bridge)
    return True


def networks_in_use(engine) -> set[str]:
    """Return the names of the networks that containers use, running or stopped, as their mode or by `connect`."""
    used = set()
    for record in engine.containers.list():
        used.add(record.network)
        used.update(record.networks)
    return used


def prune(networks: NetworkStore, in_use: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Remove every user-defined network that no container uses and repair leftovers; return the removed names.

    A network is in use while it has a live endpoint or its name is in
    `in_use` (see `networks_in_use`). Leftovers are repaired only as root
    with iptables installed, because an ordinary user cannot have made them.
    """
    # NOTE: Docker 20.10.24 keeps only networks with live endpoints, so its `network prune` also removes
    # networks that only stopped or created containers use. layerlab keeps those networks.
    if os.geteuid() == 0 and shutil.which("iptables-save") is not None:
        repair(networks)
    removed = []
    for network in networks.list():
        if network.name != DEFAULT_NETWORK and not network.endpoints and network.name not in in_use:
            try:
                remove_network(networks, network)
            except ConflictError:
                continue  # a container joined meanwhile
            removed.append(network.name)
    return removed


def repair(networks: NetworkStore, *, dry_run: bool = False) -> list[str]:
    """Find (and unless dry_run, remove) what crashed launchers left: addresses, rules, veths and bridges."""
    problems = []
    live_ids = set()
    for network in networks.list():
        for endpoint in list(network.endpoints.values()):
            if endpoint.alive():
                live_ids.add(endpoint.container_id[:12])
                continue
            problems.append(f"network {network.name}: address {endpoint.address} of exited container "
                            f"{endpoint.container_id[:12]} is still allocated")
            if not dry_run:
                detach_container(networks, endpoint.container_id)
    links = set(_link_names())
    own_prefix = f"{iptables.TAG} {networks.store_tag} container="
    bridge_prefix = f"{iptables.TAG} bridge="

    def stale_rule(comment: str) -> bool:
        # Container rules belong to one store; bridge rules are stale once the bridge is gone.
        if comment.startswith(own_prefix):
            return comment.removeprefix(own_prefix).split(" ")[0] not in live_ids
        if comment.startswith(bridge_prefix):
            return comment.removeprefix(bridge_prefix).split(" ")[0] not in links
        return False

    for _, line, comment in iptables.tagged_rules():
        if stale_rule(comment):
            problems.append(f"iptables rule left over: {line}")
    if not dry_run:
        iptables.remove(stale_rule)

    problems += _repair_links(networks, live_ids, dry_run)
    if not dry_run:
        _delete_idle_default_bridge(networks)
    return problems


def release_container(networks: NetworkStore, container_id: str) -> bool:
    """Release what a dead container's launcher or monitor left: its veth pairs, addresses and port rules.

    Call it only once the container's processes are gone. Returns whether
    any network still had an address for the container.
    """
    from layerlab.engine.network import netlink

    joined = [network for network in networks.list() if container_id in network.endpoints]
    if joined:
        IPRoute = netlink.iproute_class()
        with IPRoute() as ipr:
            for network in joined:
                netlink.delete_link(ipr, network.endpoints[container_id].host_interface)
    detach_container(networks, container_id)
    return bool(joined)


def release_dead_containers(networks: NetworkStore) -> list[str]:
    """Release the addresses and port rules of this store's dead containers; return their 12-digit IDs.

    A new container that publishes a port calls this first, because a stale
    DNAT rule for the same host port would take its connections.
    """
    dead = set()
    live_ids = set()
    for network in networks.list():
        for endpoint in network.endpoints.values():
            if endpoint.alive():
                live_ids.add(endpoint.container_id[:12])
            else:
                dead.add(endpoint.container_id)
    for container_id in dead:
        release_container(networks, container_id)

    own_prefix = f"{iptables.TAG} {networks.store_tag} container="

    def stale_rule(comment: str) -> bool:
        return comment.startswith(own_prefix) and comment.removeprefix(own_prefix).split(" ")[0] not in live_ids

    try:
        removed = iptables.remove(stale_rule)
    except ContainerError as error:
        # Another process may have deleted the same rules a moment earlier; its own teardown then did the work.
        log.warning("cannot delete stale port rules: %s", error)
        removed = []
    released = {container_id[:12] for container_id in dead}
    released.update(comment.removeprefix(own_prefix).split(" ")[0] for comment in removed)
    if released:
        log.info("released the network of dead containers %s", ", ".join(sorted(released)))
    return sorted(released)


def _delete_idle_default_bridge(networks: NetworkStore) -> None:
    """Delete the default network's bridge and its rules while no container uses it.

    The record, and with it the subnet, stays: the next container recreates
    the bridge. So a store that is deleted after a prune leaves no link.
    """
    from layerlab.engine.locking import file_lock
    from layerlab.engine.network import netlink

    with file_lock(networks.lock_path):
        network = networks._load(DEFAULT_NETWORK)
        if network is None or network.endpoints:
            return
        IPRoute = netlink.iproute_class()
        with IPRoute() as ipr:
            indexes = ipr.link_lookup(ifname=network.bridge)
            if not indexes:
                return
            # A bridge that another store shares (LAYERLAB_DEFAULT_BRIDGE) may still carry its containers.
            if any(link.get("master") == indexes[0] for link in ipr.get_links()):
                return
            netlink.delete_link(ipr, network.bridge)
        prefix = iptables.bridge_comment(network.bridge) + " "
        iptables.remove(lambda comment: comment.startswith(prefix))


def _link_names() -> list[str]:
    from layerlab.engine.network import netlink

    IPRoute = netlink.iproute_class()
    with IPRoute() as ipr:
        return netlink.link_names(ipr)


def _repair_links(networks: NetworkStore, live_ids: set[str], dry_run: bool) -> list[str]:
    from layerlab.engine.network import netlink

    # NOTE: a bridge whose record is gone (a crash inside `network rm`) is not found here,
    # because bridge names do not say which store made them.
    problems = []
    bridges = {network.bridge for network in networks.list()}
    live_prefixes = {container_id[:7] for container_id in live_ids}
    IPRoute = netlink.iproute_class()
    with IPRoute() as ipr:
        links = ipr.get_links()
        by_index = {link["index"]: link.get("ifname") for link in links}
        for link in links:
            name = link.get("ifname") or ""
            master = by_index.get(link.get("master"))
            if _VETH.match(name) and master in bridges and name[4:11] not in live_prefixes:
                problems.append(f"link {name} left over")
                if not dry_run:
                    netlink.delete_link(ipr, name)
    return problems


def connect(engine, networks: NetworkStore, network_name: str, record) -> Endpoint | None:
    """Connect a container to another network and record it, so that every later start attaches it too.

    A running container gets a new veth pair at once (eth1, eth2, ...) and
    its peers' /etc/hosts gain its names. A created or stopped container gets
    its address only at the next start, as in Docker, and connect returns None.
    """
    engine._refresh_state(record)
    if record.network in ("host", "none") or record.network in USER_MODES or record.network.startswith("container:"):
        raise InvalidArgumentError(
            f"container {record.name} uses network mode {record.network}, which cannot be connected to other networks"
        )
    if network_name in ("host", "none"):
        raise InvalidArgumentError(
            f"cannot connect container {record.name} to network {network_name}: host and none are network modes, "
            "which only `run --network` and `create --network` set"
        )
    network = networks.get(network_name)
    if record.state.status != "running":
        engine.containers.change_networks(record, lambda names: _add_network(record, names, network.name))
        log.info("recorded network %s for stopped container %s", network.name, record.id[:12])
        return None

    endpoint = _connect_running(engine, networks, network, record)
    engine.containers.change_networks(record, lambda names: _add_network(record, names, network.name, running=True))
    return endpoint


def _add_network(record, names: list[str], network_name: str, *, running: bool = False) -> list[str]:
    if network_name == record.network or network_name in names:
        if running:
            # The record already names it when an earlier connect recorded it or it is the network mode.
            return names
        raise AlreadyExistsError(f"container {record.name} is already connected to network {network_name}")
    return names + [network_name]


def _connect_running(engine, networks: NetworkStore, network: Network, record) -> Endpoint:
    from layerlab.engine.network import netlink

    interfaces_in_use = {n.endpoints[record.id].interface for n in networks.list() if record.id in n.endpoints}
    # The lowest free number, because a disconnect can leave a gap (eth0 and eth2 after eth1 went).
    position = next(number for number in range(len(interfaces_in_use) + 1) if f"eth{number}" not in interfaces_in_use)
    endpoint = Endpoint(record.id, record.name, record.hostname, "", f"eth{position}",
                        host_veth_name(record.id, position), launcher=os.getpid())
    network = networks.allocate(network.name, endpoint)
    try:
        netns = os.open(f"/proc/{record.state.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            connect_link(netlink, network, endpoint, netns, default_route=False)
        finally:
            os.close(netns)
        iptables.ensure(iptables.network_rules(network.bridge, network.subnet))
    except BaseException:
        networks.release(network.name, record.id)
        raise
    networks.update(network.name, record.id, pid=record.state.pid, launcher=0)
    refresh_hosts(networks, networks.get(network.name))
    rewrite_in_place(container_file(engine.root, record.id, "hosts"), hosts_for(networks, record.id))
    return endpoint


def disconnect(engine, networks: NetworkStore, network_name: str, record) -> None:
    """Disconnect a container from a network and remove the network from the container's record.

    A running container also loses its veth pair and its name in the peers'
    /etc/hosts. A stopped container can leave a network that was removed meanwhile, by name.
    """
    engine._refresh_state(record)
    if network_name in record.networks or network_name == record.network:
        name = network_name
    else:
        name = networks.get(network_name).name
    if record.state.status != "running":
        if name == record.network:
            raise ConflictError(
                f"cannot disconnect stopped container {record.name} from {name}, its network mode (--network): "
                "remove the container and create it on another network"
            )
        engine.containers.change_networks(record, lambda names: _remove_network(record, names, name))
        log.info("removed network %s from stopped container %s", name, record.id[:12])
        return

    _disconnect_running(engine, networks, networks.get(name), record)
    if name in record.networks:
        engine.containers.change_networks(record, lambda names: [n for n in names if n != name])


def _remove_network(record, names: list[str], network_name: str) -> list[str]:
    if network_name not in names:
        raise InvalidArgumentError(f"container {record.name} is not connected to network {network_name}")
    return [name for name in names if name != network_name]


def _disconnect_running(engine, networks: NetworkStore, network: Network, record) -> None:
    from layerlab.engine.network import netlink

    endpoint = network.endpoints.get(record.id)
    if endpoint is None:
        raise InvalidArgumentError(f"container {record.name} is not connected to network {network.name}")
    IPRoute = netlink.iproute_class()
    with IPRoute() as ipr:
        netlink.delete_link(ipr, endpoint.host_interface)
    updated = networks.release(network.name, record.id)
    if updated is not None:
        refresh_hosts(networks, updated)
    rewrite_in_place(container_file(engine.root, record.id, "hosts"), hosts_for(networks, record.id))


def _drop_dead_endpoints(networks: NetworkStore, network: Network) -> None:
    for endpoint in list(network.endpoints.values()):
        if not endpoint.alive():
            networks.release(network.name, endpoint.container_id)


def _delete_bridge(name: str) -> None:
    from layerlab.engine.network import netlink

    IPRoute = netlink.iproute_class()
    with IPRoute() as ipr:
        netlink.delete_link(ipr, name)
