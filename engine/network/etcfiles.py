"""The /etc/hosts and /etc/resolv.conf of containers on a bridge network.

Each container's files live in `containers/<id>/` and are bind-mounted
into it. A bind mount of a file pins its inode, so the files are rewritten
in place (truncate and write), never replaced by a rename, and a running
container sees peers that join or leave.
"""

from __future__ import annotations

import ipaddress
import logging
import os

log = logging.getLogger(__name__)

# systemd-resolved keeps the upstream servers here when /etc/resolv.conf
# points at its stub on 127.0.0.53, which a container cannot reach.
_RESOLVED_UPSTREAM = "/run/systemd/resolve/resolv.conf"
# Docker's fallback when the host has only loopback name servers.
_FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")


def hosts_text(base: str, own: tuple[str, list[str]] | None, peers: list[tuple[str, list[str]]]) -> str:
    """Return a hosts file: `base` (the loopback lines), then the container's own address, then its peers'."""
    lines = [base.rstrip("\n")]
    if own is not None:
        lines.append(f"{own[0]}\t{' '.join(own[1])}")
    for address, names in peers:
        lines.append(f"{address}\t{' '.join(names)}")
    return "\n".join(lines) + "\n"


def rewrite_in_place(path: str, text: str) -> None:
    """Replace the contents of `path` keeping its inode, so that bind mounts of it see the change."""
    try:
        with open(path, "r+") as handle:
            handle.seek(0)
            handle.write(text)
            handle.truncate()
    except FileNotFoundError:
        # The container was removed meanwhile; nothing mounts this file any more.
        log.debug("hosts file %s is gone; not rewritten", path)


def resolv_conf_text(host_path: str = "/etc/resolv.conf") -> str:
    """Return the resolv.conf for a bridged container: the host's, without loopback name servers.

    A loopback name server on the host is unreachable from the container's
    network namespace. When only loopback servers remain, the upstream list of
    systemd-resolved is used if it exists, else Docker's fallback
    (8.8.8.8 and 8.8.4.4).
    """
    text = _read(host_path)
    kept, dropped = _without_loopback(text)
    if _nameservers(kept) or not dropped:
        return kept
    upstream, _ = _without_loopback(_read(_RESOLVED_UPSTREAM))
    if _nameservers(upstream):
        return upstream
    log.info("the host has only loopback name servers; containers use %s", ", ".join(_FALLBACK_NAMESERVERS))
    return kept + "".join(f"nameserver {server}\n" for server in _FALLBACK_NAMESERVERS)


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""


def _without_loopback(text: str) -> tuple[str, bool]:
    lines = []
    dropped = False
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver" and _is_loopback(fields[1]):
            dropped = True
            continue
        lines.append(line)
    return ("\n".join(lines) + "\n" if lines else ""), dropped


def _nameservers(text: str) -> list[str]:
    return [line.split()[1] for line in text.splitlines() if line.startswith("nameserver") and len(line.split()) > 1]


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def container_file(root: str, container_id: str, name: str) -> str:
    return os.path.join(root, "containers", container_id, name)
