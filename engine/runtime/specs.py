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
    # For "tmpfs": file system data such as "size=64m", and mount flags
    # such as "noexec" or "nosuid" in the same comma-separated list.
    options: str = ""
    # Copy the image's files at `target` into an empty `source` before
    # binding it, as Docker fills a new named volume.
    copy_up: bool = False


@dataclass
class Resources:
    """cgroup limits; 0 means no limit."""

    memory: int = 0  # bytes
    nano_cpus: int = 0  # 10**9 per CPU, as Docker's NanoCpus
    pids_limit: int = 0


@dataclass(frozen=True)
class Security:
    """The limits on a container's processes: their capabilities, seccomp filter and no_new_privs.

    `exec` gives the processes it starts the same limits as the container's init.
    """

    cap_add: tuple[str, ...] = ()  # capability names such as "NET_ADMIN", "CAP_NET_ADMIN" or "ALL"
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    no_new_privileges: bool = False  # Docker's --security-opt no-new-privileges
    seccomp: str = ""  # "default" loads Docker's default profile; "" or "unconfined" loads none


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
    seccomp: str = ""  # "default" loads Docker's default profile; "" or "unconfined" loads none
    resources: Resources = field(default_factory=Resources)
    ulimits: dict[str, tuple[int, int]] = field(default_factory=dict)  # "nofile" -> (soft, hard)
    # The socket of a terminal container: the child sends the pseudo-terminal's
    # master fd on it, as runc's --console-socket. `start` fills it in.
    console_socket: int = -1
    cgroup_paths: tuple[str, ...] = ()  # cgroups the init joins; `start` creates them from `resources`

    @property
    def security(self) -> Security:
        return Security(tuple(self.cap_add), tuple(self.cap_drop), self.privileged, self.no_new_privileges,
                        self.seccomp)
