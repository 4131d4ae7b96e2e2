"""Published ports: parsing `-p`, choosing host ports for `-P`, and Docker's text forms."""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass

from layerlab.engine.errors import InvalidArgumentError

log = logging.getLogger(__name__)

# Docker takes host ports for -P and `-p CONTAINERPORT` from the kernel's
# ephemeral range; layerlab reads the same range.
_EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"


@dataclass(frozen=True)
class PortBinding:
    """One forwarded port: host_ip:host_port on the host to container_port in the container."""

    container_port: int
    protocol: str = "tcp"  # "tcp" or "udp"
    host_ip: str = "0.0.0.0"
    host_port: int = 0  # 0 until a free port is chosen

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host_port}->{self.container_port}/{self.protocol}"

    def to_text(self) -> str:
        """Return the `-p` form that `parse_publish` reads back."""
        return f"{self.host_ip}:{self.host_port}:{self.container_port}/{self.protocol}"


def parse_publish(text: str) -> list[PortBinding]:
    """Parse one `-p` value: `[ip:][hostport:]containerport[/proto]`; port ranges give one binding per port."""
    spec, _, protocol = text.partition("/")
    protocol = (protocol or "tcp").lower()
    if protocol not in ("tcp", "udp"):
        raise InvalidArgumentError(f"invalid publish {text!r}: protocol {protocol!r} is not tcp or udp")

    host_ip, host_part, container_part = "0.0.0.0", "", spec
    if spec.startswith("["):
        raise InvalidArgumentError(f"invalid publish {text!r}: IPv6 host addresses are not supported")
    parts = spec.split(":")
    if len(parts) == 2:
        host_part, container_part = parts
    elif len(parts) == 3:
        host_ip, host_part, container_part = parts
        host_ip = host_ip or "0.0.0.0"
        try:
            ipaddress.IPv4Address(host_ip)
        except ValueError:
            raise InvalidArgumentError(f"invalid publish {text!r}: {host_ip!r} is not an IPv4 address") from None
    elif len(parts) > 3:
        raise InvalidArgumentError(f"invalid publish {text!r}: expected [ip:][hostport:]containerport[/tcp|udp]")

    container_ports = _port_range(container_part, text)
    host_ports = _port_range(host_part, text) if host_part else [0] * len(container_ports)
    if len(host_ports) != len(container_ports):
        if len(host_ports) > 1:
            raise InvalidArgumentError(f"invalid publish {text!r}: host and container port ranges differ in length")
        # Docker allows one host port from a range: `-p 8000-8010:80` picks a free one.
        host_ports = host_ports * len(container_ports)
    return [PortBinding(c, protocol, host_ip, h) for h, c in zip(host_ports, container_ports)]


def _port_range(text: str, whole: str) -> list[int]:
    first, dash, last = text.partition("-")
    try:
        low = int(first)
        high = int(last) if dash else low
    except ValueError:
        raise InvalidArgumentError(f"invalid publish {whole!r}: port {text!r} is not a number or range") from None
    if not (1 <= low <= high <= 65535):
        raise InvalidArgumentError(f"invalid publish {whole!r}: ports must be in 1-65535, low to high")
    return list(range(low, high + 1))


def exposed_ports(settings: dict) -> list[PortBinding]:
    """Return a binding with no host port for each of the image's ExposedPorts (`80/tcp`), for `-P`."""
    bindings = []
    for key in sorted((settings.get("ExposedPorts") or {}), key=_exposed_sort_key):
        port, _, protocol = key.partition("/")
        bindings.append(PortBinding(int(port), protocol or "tcp"))
    return bindings


def _exposed_sort_key(key: str) -> tuple[int, str]:
    port, _, protocol = key.partition("/")
    return (int(port), protocol)


def resolve_host_ports(bindings: list[PortBinding], reserved: set[tuple[str, int]]) -> list[PortBinding]:
    """Replace each host port 0 with a free ephemeral port; reject a port that another container publishes.

    `reserved` contains (protocol, port) pairs that other running containers
    publish. The process that owns the container binds every port again
    (`reserve_socket`) and fails the run if another program took it meanwhile.
    """
    resolved = []
    taken = set(reserved)
    for binding in bindings:
        port = binding.host_port
        if port and (binding.protocol, port) in taken:
            raise allocated_error(binding, "another container publishes it")
        if not port:
            port = _free_port(binding.protocol, binding.host_ip, taken)
        taken.add((binding.protocol, port))
        resolved.append(PortBinding(binding.container_port, binding.protocol, binding.host_ip, port))
    return resolved


def _free_port(protocol: str, host_ip: str, taken: set[tuple[str, int]]) -> int:
    # The kernel picks a free port from its ephemeral range when a socket binds port 0.
    # The socket closes again; the process that owns the container binds the port for good.
    for _ in range(20):
        with reserve_socket(PortBinding(0, protocol, host_ip, 0)) as probe:
            port = probe.getsockname()[1]
        if (protocol, port) not in taken:
            return port
    low, high = _ephemeral_range()
    raise InvalidArgumentError(f"no free {protocol} port found in {low}-{high}: give host ports with -p")


def reserve_socket(binding: PortBinding) -> socket.socket:
    """Bind (and for TCP, listen on) `binding`'s host address and port, so that no other program can take it.

    This is what docker-proxy does for each published port: DNAT rules carry
    the traffic, and the socket only holds the port. Raises OSError when the
    port is in use.
    """
    kind = socket.SOCK_STREAM if binding.protocol == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    try:
        if binding.protocol == "tcp":
            # Lets a port be reused while old connections wait in TIME_WAIT. On Linux it never
            # lets two TCP sockets listen on one port; for UDP it would, so UDP goes without it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((binding.host_ip, binding.host_port))
        if binding.protocol == "tcp":
            sock.listen(1)
    except OSError:
        sock.close()
        raise
    return sock


def allocated_error(binding: PortBinding, reason: str = "") -> InvalidArgumentError:
    """Return Docker's error for a host port that is already in use."""
    detail = f" ({reason})" if reason else ""
    return InvalidArgumentError(
        f"Bind for {binding.host_ip}:{binding.host_port} failed: port is already allocated{detail}; "
        "choose another host port or stop the program that uses it"
    )


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open(_EPHEMERAL_RANGE_FILE) as handle:
            low, high = (int(value) for value in handle.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


def ports_column(bindings: list[PortBinding], exposed: list[str] = ()) -> str:
    """Return the PORTS column of `ps`: `0.0.0.0:8080->80/tcp, 443/tcp`.

    As in Docker, an exposed port that is not published shows as `443/tcp`.
    """
    published = {f"{binding.container_port}/{binding.protocol}" for binding in bindings}
    unpublished = [key for key in sorted(exposed, key=_exposed_sort_key) if key not in published]
    return ", ".join([str(binding) for binding in bindings] + unpublished)
