"""Container specifications: the root file system, the process and the namespace options."""

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RootfsSpec:
    """An overlay root: read-only layers under one writable layer."""

    lowerdirs: list[str]  # snapshot directories, top layer first; may be empty
    upperdir: str  # the container's writable layer
    workdir: str  # overlayfs work directory on the same file system as upperdir


@dataclass
class ProcessSpec:
    """The program that runs as the container's PID 1."""

    args: list[str]
    env: list[str]  # "KEY=value"
    cwd: str = "/"
    user: str = ""  # "", "name", "uid", "name:group", "uid:gid"
    terminal: bool = False


@dataclass
class Mount:
    """An extra mount in the container, such as a build step's cache, bind or secret mount."""

    type: str  # "bind" or "tmpfs"
    target: str  # absolute path inside the container
    source: str = ""  # host path for "bind"
    readonly: bool = False
    options: str = ""  # file system data for "tmpfs", such as "size=64m"


@dataclass
class ContainerSpec:
    """Everything `start` needs to create and run one container."""

    id: str
    rootfs: RootfsSpec
    process: ProcessSpec
    hostname: str
    # "host" shares the host's network namespace, "none" gets only loopback, and
    # any other value (a network name) gets a new namespace that network_setup configures.
    network: str = "host"
    etc_files: dict[str, str] = field(default_factory=dict)  # "/etc/hosts" -> host path, bound read-write
    readonly_rootfs: bool = False
    cap_add: tuple[str, ...] = ()  # capability names such as "NET_ADMIN", "CAP_NET_ADMIN" or "ALL"
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    no_new_privileges: bool = False  # Docker's --security-opt no-new-privileges
    mounts: list[Mount] = field(default_factory=list)  # mounted in order, after etc_files
    # Called by the launcher as network_setup(pid) once the container's network
    # namespace exists; the container's program is executed only after it returns.
    network_setup: Callable[[int], None] | None = None
    netns_path: str = ""  # join this network namespace (/proc/PID/ns/net) instead of creating one
