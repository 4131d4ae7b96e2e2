"""Choosing a subnet for a network that no route of the host overlaps."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import socket
import struct

from layerlab.engine.errors import ConflictError, InvalidArgumentError
from layerlab.engine.locking import file_lock

log = logging.getLogger(__name__)

# Candidates are tried in order. Podman's default network is 10.88.0.0/16;
# layerlab hands out /24s from the same range so that many networks fit.
DEFAULT_POOL = [f"10.88.{index}.0/24" for index in range(256)]
POOL_VARIABLE = "LAYERLAB_SUBNET_POOL"  # comma-separated CIDRs, each split into /24s
# Subnets that the stores on this host have taken, one file per subnet. A
# store's records cover only its own networks, and a bridge's route shows only
# once its first container starts, so both together miss another store's
# fresh network. /run is emptied at boot, together with every bridge.
CLAIMS_DIR = "/run/layerlab/subnets"


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


class SubnetClaims:
    """The host-wide claims in CLAIMS_DIR; use `host_claims()` to hold their lock."""

    def __init__(self, directory: str):
        self.directory = directory

    def taken(self) -> list[str]:
        """Return the subnets that live network records claim, and delete claims whose record is gone."""
        subnets = []
        for entry in sorted(os.listdir(self.directory)):
            path = os.path.join(self.directory, entry)
            try:
                with open(path) as handle:
                    claim = json.load(handle)
            except (OSError, ValueError):
                continue
            if _record_subnet(claim.get("record", "")) == claim.get("subnet"):
                subnets.append(claim["subnet"])
            else:
                log.info("dropping the claim on subnet %s: record %s is gone", claim.get("subnet"), claim.get("record"))
                os.unlink(path)
        return subnets

    def add(self, subnet: str, record_path: str) -> None:
        path = os.path.join(self.directory, subnet.replace("/", "_"))
        with open(path, "w") as handle:
            json.dump({"subnet": subnet, "record": os.path.abspath(record_path)}, handle)


@contextlib.contextmanager
def host_claims(directory: str = CLAIMS_DIR):
    """Yield the host's SubnetClaims under an exclusive lock, or None where only root could write them."""
    try:
        os.makedirs(directory, 0o755, exist_ok=True)
    except OSError as error:
        log.debug("no host-wide subnet claims in %s: %s", directory, error)
        yield None
        return
    with file_lock(directory + ".lock"):
        yield SubnetClaims(directory)


def _record_subnet(record_path: str) -> str:
    try:
        with open(record_path) as handle:
            return json.load(handle).get("subnet", "")
    except (OSError, ValueError):
        return ""
