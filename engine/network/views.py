"""`network ls` and `network inspect` output, with Docker's columns and fields."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from layerlab.engine.humanize import table
from layerlab.engine.network.records import Network


@dataclass
class NetworkRow:
    network_id: str
    name: str
    driver: str
    scope: str = "local"


@dataclass
class NetworksView:
    rows: list[NetworkRow]
    quiet: bool = False
    no_trunc: bool = False

    def text(self) -> str:
        if self.quiet:
            return "".join(f"{self._id(row)}\n" for row in self.rows)
        body = [[self._id(row), row.name, row.driver, row.scope] for row in self.rows]
        return table(["NETWORK ID", "NAME", "DRIVER", "SCOPE"], body)

    def _id(self, row: NetworkRow) -> str:
        return row.network_id if self.no_trunc else row.network_id[:12]


def pseudo_network_id(mode: str) -> str:
    """Return a stable ID for `host` and `none`, which Docker lists as networks but which have no record."""
    return hashlib.sha256(f"layerlab network {mode}".encode()).hexdigest()


def list_view(networks: list[Network], *, quiet=False, no_trunc=False) -> NetworksView:
    rows = [NetworkRow(network.id, network.name, network.driver) for network in networks]
    rows.append(NetworkRow(pseudo_network_id("host"), "host", "host"))
    rows.append(NetworkRow(pseudo_network_id("none"), "none", "null"))
    rows.sort(key=lambda row: row.name)
    return NetworksView(rows, quiet=quiet, no_trunc=no_trunc)


def inspect_document(network: Network) -> dict:
    """Return the fields of `docker network inspect` that layerlab has."""
    containers = {
        endpoint.container_id: {
            "Name": endpoint.name,
            "EndpointID": hashlib.sha256(f"{network.id}{endpoint.container_id}".encode()).hexdigest(),
            "MacAddress": "",
            "IPv4Address": f"{endpoint.address}/{network.prefixlen}",
            "IPv6Address": "",
        }
        for endpoint in network.endpoints.values()
        if endpoint.name  # build steps have no name and Docker does not list them
    }
    return {
        "Name": network.name,
        "Id": network.id,
        "Created": network.created,
        "Scope": "local",
        "Driver": network.driver,
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None,
                 "Config": [{"Subnet": network.subnet, "Gateway": network.gateway}]},
        "Internal": False,
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": containers,
        "Options": {"com.docker.network.bridge.name": network.bridge},
        "Labels": {},
    }


def _endpoint_settings(network: Network | None = None, endpoint=None, container_id: str = "") -> dict:
    """Return one entry of a container's NetworkSettings.Networks, empty as in Docker when there is no endpoint."""
    settings = {
        "IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": "", "EndpointID": "", "Gateway": "",
        "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
        "MacAddress": "", "DriverOpts": None,
    }
    if network is not None and endpoint is not None:
        settings.update({
            # Docker gives the short container ID as an alias on user-defined networks only.
            "Aliases": [container_id[:12]] if network.user_defined else None,
            "NetworkID": network.id,
            "EndpointID": hashlib.sha256(f"{network.id}{container_id}".encode()).hexdigest(),
            "Gateway": network.gateway,
            "IPAddress": endpoint.address,
            "IPPrefixLen": network.prefixlen,
        })
    return settings


def container_networks(networks, record, running: bool) -> dict:
    """Return `docker inspect`'s NetworkSettings.Networks of a container record.

    A stopped container lists its networks with empty addresses, as in
    Docker, because it gets its addresses only when it starts. `networks`
    is the NetworkStore, or None for modes without records (host, none, slirp4netns, pasta).
    """
    if record.network.startswith("container:"):
        return {}
    if networks is None:
        return {record.network: _endpoint_settings()}
    documents = {}
    joined = {network.name: network for network in networks.list() if record.id in network.endpoints}
    for name in [record.network] + list(record.networks):
        network = joined.get(name) if running else None
        endpoint = network.endpoints[record.id] if network is not None else None
        documents[name] = _endpoint_settings(network, endpoint, record.id)
    return documents
