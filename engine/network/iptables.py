"""NAT and port-forwarding rules through iptables (the nft backend on current Debian), plus the sysctls they need.

Every rule carries a comment that starts with `layerlab `, naming the
network or container it serves, so cleanup can find leftovers after a
crash with one `iptables-save`. Rules are added and deleted in batches
through `iptables-restore --noflush`, one process per batch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass

from layerlab.engine.errors import ContainerError

log = logging.getLogger(__name__)

TAG = "layerlab"


@dataclass(frozen=True)
class Rule:
    table: str  # "nat" or "filter"
    chain: str
    match: tuple[str, ...]  # iptables arguments before the comment
    target: tuple[str, ...]  # "-j" and its options
    comment: str  # unique per rule; starts with TAG

    def line(self, action: str = "-A") -> str:
        words = [action, self.chain, *self.match, "-m", "comment", "--comment", self.comment, *self.target]
        # iptables-restore splits on spaces and knows only double quotes, so only the comment is quoted.
        return " ".join(f'"{word}"' if word == self.comment else word for word in words)


def store_tag(root: str) -> str:
    """Return 8 hex digits that name a store in rule comments, so that repair leaves other stores' rules alone."""
    return hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:8]


def bridge_comment(bridge: str) -> str:
    """Return the comment prefix of a bridge's rules: stores that share a bridge share its rules."""
    return f"{TAG} bridge={bridge}"


def container_comment(store: str, container_id: str) -> str:
    return f"{TAG} {store} container={container_id[:12]}"


def network_rules(bridge: str, subnet: str) -> list[Rule]:
    """Return the rules a bridge network needs: outbound MASQUERADE, forwarding, and loopback-published ports."""
    base = bridge_comment(bridge)
    return [
        # Traffic from the subnet to anywhere but the bridge leaves with the host's address.
        Rule("nat", "POSTROUTING", ("-s", subnet, "!", "-o", bridge), ("-j", "MASQUERADE"), f"{base} {subnet} masquerade"),
        # Connections to a published port on 127.0.0.1 reach the bridge with a loopback source,
        # which the container would answer locally, so they take the bridge's address.
        Rule("nat", "POSTROUTING", ("-o", bridge, "-m", "addrtype", "--src-type", "LOCAL"), ("-j", "MASQUERADE"),
             f"{base} local-source"),
        # A FORWARD policy of DROP (Docker sets one) would block the containers.
        Rule("filter", "FORWARD", ("-i", bridge,), ("-j", "ACCEPT"), f"{base} forward-out"),
        Rule("filter", "FORWARD", ("-o", bridge,), ("-j", "ACCEPT"), f"{base} forward-in"),
    ]


def port_rules(store: str, container_id: str, address: str, bindings) -> list[Rule]:
    """Return DNAT rules for `bindings` (PortBindings) to the container at `address`.

    PREROUTING catches connections from other hosts and containers, OUTPUT
    those that the host itself makes, 127.0.0.1 included.
    """
    rules = []
    base = container_comment(store, container_id)
    for binding in bindings:
        if binding.host_ip == "0.0.0.0":
            destination = ("-m", "addrtype", "--dst-type", "LOCAL")
        else:
            destination = ("-d", f"{binding.host_ip}/32")
        match = (*destination, "-p", binding.protocol, "-m", binding.protocol, "--dport", str(binding.host_port))
        target = ("-j", "DNAT", "--to-destination", f"{address}:{binding.container_port}")
        name = f"{base} {binding.host_ip}:{binding.host_port}/{binding.protocol}"
        rules.append(Rule("nat", "PREROUTING", match, target, name))
        rules.append(Rule("nat", "OUTPUT", match, target, name + " local"))
    return rules


def forwarded_ports(exclude_store: str) -> dict[tuple[str, str, int], str]:
    """Return the ports that other stores' DNAT rules forward: (protocol, host IP, port) -> rule comment.

    Port rule comments read `layerlab STORE container=ID IP:PORT/PROTOCOL`,
    as `port_rules` writes them.
    """
    forwarded = {}
    for table, _, comment in tagged_rules():
        words = comment.split()
        if table != "nat" or len(words) < 4 or words[1] == exclude_store or not words[2].startswith("container="):
            continue
        address, _, protocol = words[3].partition("/")
        host_ip, _, port = address.rpartition(":")
        if port.isdigit():
            forwarded[(protocol, host_ip, int(port))] = comment
    return forwarded


def ensure(rules: list[Rule]) -> int:
    """Add each rule whose comment is not yet in the kernel's rule set; return how many were added."""
    present = existing_comments()
    missing = [rule for rule in rules if rule.comment not in present]
    if missing:
        _restore({table: [rule.line("-A") for rule in missing if rule.table == table] for table in _tables(missing)})
        log.info("added %d iptables rules: %s", len(missing), ", ".join(rule.comment for rule in missing))
    return len(missing)


def existing_comments() -> set[str]:
    return {comment for _, _, comment in tagged_rules()}


def tagged_rules() -> list[tuple[str, str, str]]:
    """Return (table, rule line as iptables-save prints it, comment) for every rule with a layerlab comment."""
    rules = []
    table = ""
    for line in _run(["iptables-save"]).splitlines():
        if line.startswith("*"):
            table = line[1:]
            continue
        if not line.startswith("-A ") or f'--comment "{TAG} ' not in line and f"--comment {TAG}" not in line:
            continue
        words = shlex.split(line)
        comment = words[words.index("--comment") + 1]
        if comment.startswith(TAG + " "):
            rules.append((table, line, comment))
    return rules


def remove(predicate) -> list[str]:
    """Delete every layerlab rule whose comment satisfies `predicate`; return the deleted comments."""
    doomed: dict[str, list[str]] = {}
    comments = []
    for table, line, comment in tagged_rules():
        if predicate(comment):
            doomed.setdefault(table, []).append("-D" + line[2:])
            comments.append(comment)
    if doomed:
        _restore(doomed)
        log.info("deleted %d iptables rules: %s", len(comments), ", ".join(comments))
    return comments


def enable_forwarding(bridge: str) -> None:
    """Switch on IPv4 forwarding, and route_localnet on the bridge so that 127.0.0.1 can be DNATed to it."""
    _write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")
    _write_sysctl(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet", "1")


def _write_sysctl(path: str, value: str) -> None:
    try:
        with open(path) as handle:
            if handle.read().strip() == value:
                return
        with open(path, "w") as handle:
            handle.write(value)
    except OSError as error:
        raise ContainerError(f"cannot set {path} to {value}: {error.strerror}; run as root or use --network host") from None


def _tables(rules: list[Rule]) -> list[str]:
    return sorted({rule.table for rule in rules})


def _restore(lines_by_table: dict[str, list[str]]) -> None:
    text = "".join(f"*{table}\n" + "".join(line + "\n" for line in lines) + "COMMIT\n"
                   for table, lines in lines_by_table.items() if lines)
    _run(["iptables-restore", "--noflush"], text)


def _run(argv: list[str], stdin: str | None = None) -> str:
    if shutil.which(argv[0]) is None:
        raise ContainerError(f"{argv[0]} not found: install iptables (`apt-get install iptables`) or use --network host")
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        raise ContainerError(f"{' '.join(argv)} failed with status {result.returncode}: {result.stderr.strip()}"
                             + (f"\ninput was:\n{stdin}" if stdin else ""))
    return result.stdout
