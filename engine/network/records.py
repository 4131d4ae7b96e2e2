"""Network records: `networks/<name>.json` with the subnet, the bridge and each container's address.

Every change to a record happens under one lock, so two `run`s that start
at the same moment never get the same address.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import os
import re
import secrets
import tempfile
from dataclasses import asdict, dataclass, field

from layerlab.engine.errors import AlreadyExistsError, ConflictError, InvalidArgumentError, NotFoundError
from layerlab.engine.locking import file_lock
from layerlab.engine.network import iptables, subnets

log = logging.getLogger(__name__)

DEFAULT_NETWORK = "bridge"
BRIDGE_VARIABLE = "LAYERLAB_DEFAULT_BRIDGE"  # names the default network's bridge of a new store
SYSTEM_ROOT = "/var/lib/layerlab"
# Modes that are not records: they never get a bridge or an address.
SPECIAL_MODES = ("host", "none")

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


@dataclass
class Endpoint:
    """One container's place on a network."""

    container_id: str
    name: str  # the container's name, which peers resolve
    hostname: str
    address: str  # "10.88.0.2"
    interface: str = "eth0"  # its name inside the container
    host_interface: str = ""  # the veth end on the host's bridge
    launcher: int = 0  # PID of the process that allocated the address
    pid: int = 0  # host PID of the container's init, once its link is up

    def alive(self) -> bool:
        """Return whether the container or the process starting it still runs (a dead endpoint is a crash leftover)."""
        return _pid_alive(self.pid) or _pid_alive(self.launcher)


@dataclass
class Network:
    name: str
    id: str
    bridge: str  # the host's bridge device
    subnet: str  # "10.88.0.0/24"
    gateway: str  # the bridge's address and the containers' default route
    created: str
    driver: str = "bridge"
    endpoints: dict[str, Endpoint] = field(default_factory=dict)

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen

    @property
    def user_defined(self) -> bool:
        """Whether containers resolve each other by name here, as on Docker's user-defined networks."""
        return self.name != DEFAULT_NETWORK


def default_bridge_name(store_root: str) -> str:
    """Return the bridge of a store's default network: LAYERLAB_DEFAULT_BRIDGE, else one per store.

    Each store allocates addresses from its own records, so two stores on
    one bridge could hand out the same address. The system store keeps the
    name layerlab0; any other store gets `ll-` and its 8-digit tag.
    """
    override = os.environ.get(BRIDGE_VARIABLE, "").strip()
    if override:
        return override
    if os.path.abspath(store_root) == SYSTEM_ROOT:
        return "layerlab0"
    return "ll-" + iptables.store_tag(store_root)


class NetworkStore:
    """The `networks/` folder of a store."""

    def __init__(self, root: str, lock_dir: str, pool: list[str] | None = None):
        self.root = os.path.join(root, "networks")
        self.lock_path = os.path.join(lock_dir, "networks.lock")
        self.store_tag = iptables.store_tag(root)
        self.pool = pool or subnets.pool_from_environment()
        os.makedirs(self.root, exist_ok=True)
        os.makedirs(lock_dir, exist_ok=True)

    # Records

    def list(self) -> list[Network]:
        networks = []
        for entry in sorted(os.listdir(self.root)):
            if entry.endswith(".json") and not entry.startswith("."):
                network = self._load(entry[:-5])
                if network is not None:
                    networks.append(network)
        return networks

    def get(self, name_or_id: str) -> Network:
        """Find a network by name, ID or unique ID prefix; the default `bridge` is made on first use."""
        if name_or_id == DEFAULT_NETWORK:
            return self.default()
        network = self._load(name_or_id) if _NAME.match(name_or_id) else None
        if network is not None:
            return network
        matches = [n for n in self.list() if name_or_id and n.id.startswith(name_or_id)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ConflictError(f"network ID prefix {name_or_id!r} matches {len(matches)} networks: give more digits")
        raise NotFoundError(f"No such network: {name_or_id}")

    def default(self) -> Network:
        network = self._load(DEFAULT_NETWORK)
        if network is not None:
            return network
        with file_lock(self.lock_path):
            network = self._load(DEFAULT_NETWORK)
            if network is None:
                network = self._new(DEFAULT_NETWORK, None, default_bridge_name(os.path.dirname(self.root)))
                log.info("created the default network with subnet %s on %s", network.subnet, network.bridge)
        return network

    def create(self, name: str, subnet: str | None = None) -> Network:
        if name in SPECIAL_MODES or name == DEFAULT_NETWORK or name.startswith("container:"):
            raise AlreadyExistsError(f"network name {name!r} is reserved: choose another name")
        if not _NAME.match(name):
            raise InvalidArgumentError(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        if os.geteuid() != 0:
            # TODO: rootless user-defined networks, with slirp4netns or pasta behind a bridge in a user namespace.
            raise InvalidArgumentError(
                f"cannot create network {name!r}: a user-defined network is a bridge with veth pairs, which needs "
                "root; as an ordinary user, use the default network (slirp4netns or pasta), host or none"
            )
        with file_lock(self.lock_path):
            if self._load(name) is not None:
                raise AlreadyExistsError(f"network with name {name} already exists")
            network_id = secrets.token_hex(32)
            return self._new(name, subnet, "ll-" + network_id[:12], network_id)

    def remove(self, network: Network) -> None:
        if network.name == DEFAULT_NETWORK:
            raise ConflictError("bridge is a pre-defined network and cannot be removed")
        with file_lock(self.lock_path):
            current = self._load(network.name)
            if current is None:
                return
            if current.endpoints:
                names = ", ".join(sorted(e.name for e in current.endpoints.values()))
                raise ConflictError(
                    f"error while removing network: network {network.name} id {network.id} has active endpoints "
                    f"({names}): stop or disconnect them first"
                )
            os.unlink(self._path(network.name))

    # Addresses

    def allocate(self, network_name: str, endpoint: Endpoint) -> Network:
        """Give `endpoint` the lowest free address of the network and store it; return the updated network."""
        with file_lock(self.lock_path):
            network = self._require(network_name)
            if endpoint.container_id in network.endpoints:
                raise AlreadyExistsError(f"container {endpoint.name} is already connected to network {network.name}")
            for existing in network.endpoints.values():
                if existing.name == endpoint.name:
                    raise AlreadyExistsError(
                        f"a container named {endpoint.name} is already connected to network {network.name}"
                    )
            endpoint.address = endpoint.address or _free_address(network)
            network.endpoints[endpoint.container_id] = endpoint
            self._save(network)
            return network

    def update(self, network_name: str, container_id: str, **fields) -> None:
        """Change fields of one endpoint, such as its `pid` once the container runs."""
        with file_lock(self.lock_path):
            network = self._load(network_name)
            if network is None or container_id not in network.endpoints:
                return
            for key, value in fields.items():
                setattr(network.endpoints[container_id], key, value)
            self._save(network)

    def release(self, network_name: str, container_id: str) -> Network | None:
        """Forget the container's address on the network; return the updated network, None if nothing changed."""
        with file_lock(self.lock_path):
            network = self._load(network_name)
            if network is None or container_id not in network.endpoints:
                return None
            del network.endpoints[container_id]
            self._save(network)
            return network

    # Helpers

    def _new(self, name: str, subnet: str | None, bridge: str, network_id: str | None = None) -> Network:
        # Called with the lock held.
        with subnets.host_claims() as claims:
            taken = [n.subnet for n in self.list()] + (claims.taken() if claims else [])
            if subnet:
                chosen = subnets.check_subnet(subnet, taken)
            else:
                chosen = subnets.choose_subnet(self.pool, taken)
            network = self._save_new(name, chosen, bridge, network_id)
            if claims:
                claims.add(network.subnet, self._path(name))
        return network

    def _save_new(self, name: str, chosen: str, bridge: str, network_id: str | None) -> Network:
        net = ipaddress.ip_network(chosen)
        network = Network(
            name=name,
            id=network_id or secrets.token_hex(32),
            bridge=bridge,
            subnet=str(net),
            gateway=str(net.network_address + 1),
            created=datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z"),
        )
        self._save(network)
        return network

    def _require(self, name: str) -> Network:
        network = self._load(name)
        if network is None:
            raise NotFoundError(f"No such network: {name}")
        return network

    def _path(self, name: str) -> str:
        return os.path.join(self.root, name + ".json")

    def _load(self, name: str) -> Network | None:
        try:
            with open(self._path(name)) as handle:
                doc = json.load(handle)
        except FileNotFoundError:
            return None
        except json.JSONDecodeError:
            log.warning("network record %s is unreadable; remove it or run `layerlab network prune`", self._path(name))
            return None
        endpoints = {key: Endpoint(**value) for key, value in doc.pop("endpoints", {}).items()}
        return Network(**doc, endpoints=endpoints)

    def _save(self, network: Network) -> None:
        fd, tmp_path = tempfile.mkstemp(prefix=".write-", dir=self.root)
        with os.fdopen(fd, "w") as tmp:
            json.dump(asdict(network), tmp, indent=1)
        os.rename(tmp_path, self._path(network.name))


def _free_address(network: Network) -> str:
    net = ipaddress.ip_network(network.subnet)
    used = {network.gateway} | {e.address for e in network.endpoints.values()}
    for host in net.hosts():
        if str(host) not in used:
            return str(host)
    raise ConflictError(
        f"no free address left in network {network.name} ({network.subnet}): remove containers or "
        "create a network with a larger --subnet"
    )


def _pid_alive(pid: int) -> bool:
    # A killed container stays a zombie until its new parent reaps it, and kill(pid, 0)
    # succeeds on a zombie, so the state letter in /proc/PID/stat decides.
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")
