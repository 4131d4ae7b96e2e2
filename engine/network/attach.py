"""Connecting one container to its networks: addresses and /etc files before start, links at start, cleanup at exit."""

from __future__ import annotations

import logging
import os

from layerlab.engine.errors import ContainerError, InvalidArgumentError
from layerlab.engine.network import etcfiles, iptables
from layerlab.engine.network.ports import PortBinding, allocated_error, reserve_socket
from layerlab.engine.network.records import Endpoint, Network, NetworkStore

log = logging.getLogger(__name__)


def host_veth_name(container_id: str, position: int) -> str:
    """Return the host end's name: `veth`, 7 hex digits of the ID and the interface number (15 bytes at most)."""
    return f"veth{container_id[:7]}{position}"


class Attachment:
    """A container's endpoints on bridge networks, from address allocation to teardown."""

    def __init__(self, networks: NetworkStore, container_id: str, name: str, hostname: str,
                 etc_files: dict[str, str], ports: list[PortBinding] | None = None):
        self.networks = networks
        self.container_id = container_id
        self.name = name
        self.hostname = hostname
        self.etc_files = etc_files  # "/etc/hosts" -> host path, as bind-mounted into the container
        self.ports = list(ports or [])
        self.joined: list[Network] = []
        self.port_sockets = []  # one bound socket per published port, held until teardown

    def reserve_ports(self) -> None:
        """Bind every published host port until teardown, so that no other program or store can take it.

        Raises Docker's "port is already allocated" error when a port is in
        use, or when another store's DNAT rule already forwards it.
        """
        if not self.ports:
            return
        forwarded = iptables.forwarded_ports(self.networks.store_tag)
        try:
            for binding in self.ports:
                clash = _forwarding_rule(forwarded, binding)
                if clash:
                    raise allocated_error(binding, f"another layerlab store forwards it: iptables rule {clash!r}")
                try:
                    self.port_sockets.append(reserve_socket(binding))
                except OSError as error:
                    raise allocated_error(binding, error.strerror) from None
        except BaseException:
            self.release_ports()
            raise

    def release_ports(self) -> None:
        for sock in self.port_sockets:
            sock.close()
        self.port_sockets = []

    def prepare(self, network_name: str) -> None:
        """Allocate the container's address on `network_name` and write its hosts and resolv.conf.

        The first network prepared becomes eth0 with the default route, the next ones eth1, eth2, ...
        """
        if os.geteuid() != 0:
            # TODO: rootless containers need slirp4netns or pasta for a bridge-like network.
            raise InvalidArgumentError(
                f"network {network_name!r} needs root (bridges and veth pairs); use --network none or host"
            )
        network = self.networks.get(network_name)
        position = len(self.joined)
        endpoint = Endpoint(self.container_id, self.name, self.hostname, "", f"eth{position}",
                            host_veth_name(self.container_id, position), launcher=os.getpid())
        network = self.networks.allocate(network.name, endpoint)
        self.joined.append(network)
        log.info("container %s has address %s on network %s", self.container_id[:12], endpoint.address, network.name)

        resolv = self.etc_files.get("/etc/resolv.conf")
        if resolv:
            etcfiles.rewrite_in_place(resolv, etcfiles.resolv_conf_text())
        refresh_hosts(self.networks, network)
        if self.etc_files.get("/etc/hosts"):
            etcfiles.rewrite_in_place(self.etc_files["/etc/hosts"], hosts_for(self.networks, self.container_id))

    def setup(self, pid: int) -> None:
        """Create the bridge and the veth pair into the namespace of `pid`, then add the NAT and port rules.

        The runtime calls this while the container's init waits before exec.
        """
        from layerlab.engine.network import netlink

        netns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            for position, network in enumerate(self.joined):
                endpoint = network.endpoints[self.container_id]
                connect_link(netlink, network, endpoint, netns, default_route=position == 0)
                self.networks.update(network.name, self.container_id, pid=pid)
        finally:
            os.close(netns)

        rules = []
        for network in self.joined:
            rules += iptables.network_rules(network.bridge, network.subnet)
        if self.ports and self.joined:
            address = self.joined[0].endpoints[self.container_id].address
            rules += iptables.port_rules(self.networks.store_tag, self.container_id, address, self.ports)
        iptables.ensure(rules)

    def teardown(self) -> None:
        """Release the addresses, delete the port rules and update the peers' hosts files.

        The veth pair needs no step: the kernel deletes it with the namespace
        when the container's last process exits.
        """
        detach_container(self.networks, self.container_id)
        self.release_ports()


def _forwarding_rule(forwarded: dict[tuple[str, str, int], str], binding: PortBinding) -> str:
    """Return the comment of a rule that forwards `binding`'s port on an overlapping address, or ""."""
    for (protocol, host_ip, port), comment in forwarded.items():
        same_address = "0.0.0.0" in (host_ip, binding.host_ip) or host_ip == binding.host_ip
        if protocol == binding.protocol and port == binding.host_port and same_address:
            return comment
    return ""


def connect_link(netlink, network: Network, endpoint: Endpoint, netns: int, *, default_route: bool) -> None:
    """Make sure the bridge is up, then add the veth pair and configure the container's end."""
    IPRoute = netlink.iproute_class()
    with IPRoute() as ipr:
        bridge_index = netlink.ensure_bridge(ipr, network.bridge, network.gateway, network.prefixlen)
        iptables.enable_forwarding(network.bridge)
        # A link of this name can be left only by a container whose ID shares 7 digits; it is stale.
        netlink.delete_link(ipr, endpoint.host_interface)
        netlink.add_veth(ipr, endpoint.host_interface, bridge_index, endpoint.interface, netns)
    netlink.configure_inside(netns, endpoint.interface, endpoint.address, network.prefixlen,
                             network.gateway if default_route else None)


def detach_container(networks: NetworkStore, container_id: str) -> None:
    """Forget the container on every network, rewrite its peers' hosts files and delete its port rules."""
    for network in networks.list():
        updated = networks.release(network.name, container_id)
        if updated is not None:
            refresh_hosts(networks, updated)
            log.info("released container %s from network %s", container_id[:12], network.name)
    try:
        prefix = iptables.container_comment(networks.store_tag, container_id) + " "
        iptables.remove(lambda comment: comment.startswith(prefix))
    except ContainerError as error:
        log.warning("cannot delete the port rules of container %s: %s; run `layerlab network prune`", container_id[:12], error)


def hosts_for(networks: NetworkStore, container_id: str) -> str:
    """Return the hosts file of a container: its own addresses, and its peers' on user-defined networks."""
    from layerlab.engine.lifecycle import HOSTS_TEMPLATE

    own = None
    own_interface = ""
    peers: list[tuple[str, list[str]]] = []
    seen = set()
    for network in networks.list():
        endpoint = network.endpoints.get(container_id)
        if endpoint is None:
            continue
        # The container's own name maps to its address on eth0, the interface with the default route.
        if own is None or _interface_number(endpoint.interface) < _interface_number(own_interface):
            own = (endpoint.address, _names(endpoint))
            own_interface = endpoint.interface
        if not network.user_defined:
            continue
        for peer in network.endpoints.values():
            if peer.container_id != container_id and peer.address not in seen:
                seen.add(peer.address)
                peers.append((peer.address, _names(peer)))
    return etcfiles.hosts_text(HOSTS_TEMPLATE, own, peers)


def refresh_hosts(networks: NetworkStore, network: Network) -> None:
    """Rewrite the hosts file of every container on a user-defined network, so that peers resolve by name."""
    if not network.user_defined:
        return
    for endpoint in network.endpoints.values():
        path = etcfiles.container_file(os.path.dirname(networks.root), endpoint.container_id, "hosts")
        if os.path.exists(path):
            etcfiles.rewrite_in_place(path, hosts_for(networks, endpoint.container_id))


def _interface_number(interface: str) -> int:
    digits = interface.removeprefix("eth")
    return int(digits) if digits.isdigit() else 1 << 16


def _names(endpoint: Endpoint) -> list[str]:
    names = [endpoint.hostname]
    if endpoint.name and endpoint.name != endpoint.hostname:
        names.append(endpoint.name)
    return names
