"""EXPOSE port specifications: `80`, `80/tcp`, `53/udp`, `8000-8010/tcp`."""

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

PROTOCOLS = ("tcp", "udp", "sctp")


@dataclass(frozen=True)
class PortSpec:
    """A container port or an inclusive range of them, with its protocol."""

    start: int
    end: int
    protocol: str = "tcp"

    def keys(self) -> list[str]:
        """Return the image config's `ExposedPorts` keys, one per port (`80/tcp`)."""
        return [f"{port}/{self.protocol}" for port in range(self.start, self.end + 1)]


def parse_port(spec: str) -> PortSpec:
    """Parse one EXPOSE word. Raises ValueError naming the invalid part.

    The protocol is case-insensitive and defaults to tcp, as in Docker.
    NOTE: Docker also accepts `ip:hostPort:containerPort` here and ignores
    the host part. This parser rejects that form.
    """
    ports, slash, protocol = spec.partition("/")
    protocol = protocol.lower() if slash else "tcp"
    if protocol not in PROTOCOLS:
        raise ValueError(f"invalid protocol {protocol!r} in port {spec!r}: use tcp, udp or sctp")

    first, dash, last = ports.partition("-")
    start = _port_number(first, spec)
    end = _port_number(last, spec) if dash else start
    if end < start:
        raise ValueError(f"invalid port range {ports!r}: the end is lower than the start")
    return PortSpec(start, end, protocol)


def _port_number(text, spec):
    if not text.isdigit() or not text.isascii():
        raise ValueError(f"invalid port {text!r} in {spec!r}: use a number from 0 to 65535")
    number = int(text)
    if number > 65535:
        raise ValueError(f"invalid port {text!r} in {spec!r}: use a number from 0 to 65535")
    return number
