"""Choosing a subnet for a network that no route of the host overlaps."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import struct

from layerlab.engine.errors import ConflictError, InvalidArgumentError

log = logging.getLogger(__name__)

# Candidates are tried in order. Podman's default network is 10.88.0.0/16;
# layerlab hands out /24s from the same range so that many networks fit.
DEFAULT_POOL = [f"10.88.{index}.0/24" for index in range(256)]
POOL_VARIABLE = "LAYERLAB_SUBNET_POOL"  # comma-separated CIDRs, each split into /24s


def pool_from_environment() -> list[str]:
    """Return the candidate subnets: LAYERLAB_SUBNET_POOL split into /24s, else the default pool."""
    text = os.environ.get(POOL_VARIABLE, "").strip()
    if not text:
        return list(DEFAULT_POOL)
    pool = []
    for item in text.split(","):
        try:
            network = ipaddress.ip_network(item.strip())
        except ValueError:
            raise InvalidArgumentError(f"{POOL_VARIABLE}: invalid subnet {item!r}: expected a CIDR such as 10.88.0.0/16") from None
        if network.version != 4:
            raise InvalidArgumentError(f"{POOL_VARIABLE}: {item!r} is not IPv4, which is all layerlab supports")
        pool.extend(str(sub) for sub in (network.subnets(new_prefix=24) if network.prefixlen < 24 else [network]))
    return pool


def host_routes() -> list[ipaddress.IPv4Network]:
    """Return the destinations of the host's IPv4 routes, read from /proc/net/route (no netlink import)."""
    routes = []
    try:
        with open("/proc/net/route") as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                destination, mask = (struct.pack("<I", int(value, 16)) for value in (fields[1], fields[7]))
                if mask == b"\0\0\0\0":
                    continue  # the default route overlaps everything and must not rule out every candidate
                routes.append(ipaddress.ip_network(f"{socket.inet_ntoa(destination)}/{socket.inet_ntoa(mask)}"))
    except OSError as error:
        log.warning("cannot read /proc/net/route (%s); subnets are chosen without checking host routes", error)
    return routes


def choose_subnet(pool: list[str], taken: list[str]) -> str:
    """Return the first candidate that overlaps neither a host route nor another network."""
    busy = [ipaddress.ip_network(subnet) for subnet in taken] + host_routes()
    for candidate in pool:
        network = ipaddress.ip_network(candidate)
        if not any(network.overlaps(other) for other in busy):
            return str(network)
    raise ConflictError(
        f"all {len(pool)} candidate subnets overlap a host route or another network: "
        f"remove a network, pass --subnet, or set {POOL_VARIABLE}"
    )


def check_subnet(subnet: str, taken: list[str]) -> str:
    """Validate a subnet given with --subnet; return it normalised."""
    try:
        network = ipaddress.ip_network(subnet)
    except ValueError:
        raise InvalidArgumentError(f"invalid subnet {subnet!r}: expected a CIDR such as 10.89.0.0/24") from None
    if network.version != 4 or network.prefixlen > 30:
        raise InvalidArgumentError(f"invalid subnet {subnet!r}: use an IPv4 subnet of /30 or larger")
    for other in taken:
        if network.overlaps(ipaddress.ip_network(other)):
            raise ConflictError(f"subnet {subnet} overlaps the subnet {other} of another network: choose another")
    for route in host_routes():
        if network.overlaps(route):
            raise ConflictError(f"subnet {subnet} overlaps the host's route to {route}: choose another")
    return str(network)
