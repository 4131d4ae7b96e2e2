"""User-mode networking for rootless containers: slirp4netns or pasta, as podman uses them.

An ordinary user cannot create bridges or veth pairs in the host's network
namespace. A helper process instead joins the container's user and network
namespaces, creates a tap device there, and carries the container's traffic
through ordinary sockets on the host, so the container gets outbound access
and `-p` ports are bound by the helper on the host. The process that owns
the container (the monitor, or the launcher of a foreground run) starts the
helper before the container's program runs and kills it at teardown.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time

from layerlab.engine.errors import ContainerError
from layerlab.engine.network import etcfiles
from layerlab.engine.network.ports import PortBinding, allocated_error

log = logging.getLogger(__name__)

SLIRP4NETNS = "slirp4netns"
PASTA = "pasta"
USER_MODES = (SLIRP4NETNS, PASTA)

# slirp4netns's defaults (10.0.2.0/24): the container is 10.0.2.100, and the
# helper answers DNS on 10.0.2.3, forwarding to the host's name servers.
SLIRP_DNS = "10.0.2.3"
# slirp4netns and podman use this MTU: larger frames mean fewer trips through the helper.
SLIRP_MTU = "65520"
_STARTUP_TIMEOUT = 10.0  # seconds for the helper to configure the namespace


def tun_usable() -> bool:
    """Return whether this user can open /dev/net/tun, which both helpers need."""
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def available_mode() -> str | None:
    """Return the user-mode network that works here: slirp4netns, else pasta, else None."""
    if not tun_usable():
        return None
    for mode in USER_MODES:
        if shutil.which(mode):
            return mode
    return None


class UserModeNetwork:
    """A slirp4netns or pasta process serving one container's network namespace."""

    def __init__(self, mode: str, container_id: str, etc_files: dict[str, str], ports: list[PortBinding]):
        if not shutil.which(mode):
            package = "slirp4netns" if mode == SLIRP4NETNS else "passt"
            raise ContainerError(f"network {mode} needs the {mode} program: install it (`apt-get install {package}`) "
                                 "or use --network host")
        self.mode = mode
        self.container_id = container_id
        self.ports = list(ports)
        self.process: subprocess.Popen | None = None
        self.helper_pid = 0  # pasta's PID once it has gone to the background
        self.exit_fd = -1  # slirp4netns exits when this pipe's write end closes, even if its owner is killed
        self.scratch = tempfile.mkdtemp(prefix=f"layerlab-{mode}-")
        resolv = etc_files.get("/etc/resolv.conf")
        if resolv:
            text = f"nameserver {SLIRP_DNS}\n" if mode == SLIRP4NETNS else etcfiles.resolv_conf_text()
            etcfiles.rewrite_in_place(resolv, text)

    def setup(self, pid: int) -> None:
        """Start the helper on the namespaces of the container's init `pid` and forward the published ports."""
        if self.mode == SLIRP4NETNS:
            self._start_slirp4netns(pid)
        else:
            self._start_pasta(pid)
        log.info("container %s has user-mode network %s (ports: %s)", self.container_id[:12], self.mode,
                 ", ".join(str(binding) for binding in self.ports) or "none")

    def teardown(self) -> None:
        """Stop the helper, which releases the published ports."""
        if self.exit_fd >= 0:
            os.close(self.exit_fd)
            self.exit_fd = -1
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self.helper_pid:
            _stop_daemon(self.helper_pid)
            self.helper_pid = 0
        shutil.rmtree(self.scratch, ignore_errors=True)

    # slirp4netns

    def _start_slirp4netns(self, pid: int) -> None:
        api_socket = os.path.join(self.scratch, "api.sock")
        ready_read, ready_write = os.pipe2(os.O_CLOEXEC)
        exit_read, self.exit_fd = os.pipe2(os.O_CLOEXEC)
        args = ["slirp4netns", "--configure", f"--mtu={SLIRP_MTU}", "--disable-host-loopback",
                f"--api-socket={api_socket}", f"--ready-fd={ready_write}", f"--exit-fd={exit_read}",
                str(pid), "tap0"]
        log_path = os.path.join(self.scratch, "helper.log")
        try:
            with open(log_path, "wb") as helper_log:
                self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=helper_log, stderr=helper_log,
                                                pass_fds=(ready_write, exit_read), start_new_session=True)
        finally:
            os.close(ready_write)
            os.close(exit_read)
        try:
            ready = _read_with_timeout(ready_read, _STARTUP_TIMEOUT)
        finally:
            os.close(ready_read)
        if ready != b"1":
            self.teardown_keep_log()
            raise ContainerError(f"slirp4netns failed to configure the network of container {self.container_id[:12]}: "
                                 f"{self._helper_output(log_path)}; use --network host or --network none")
        for binding in self.ports:
            self._add_hostfwd(api_socket, binding)

    def _add_hostfwd(self, api_socket: str, binding: PortBinding) -> None:
        request = {"execute": "add_hostfwd", "arguments": {
            "proto": binding.protocol, "host_addr": binding.host_ip, "host_port": binding.host_port,
            "guest_port": binding.container_port}}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(_STARTUP_TIMEOUT)
            client.connect(api_socket)
            client.sendall(json.dumps(request).encode())
            client.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := client.recv(4096):
                reply += chunk
        try:
            answer = json.loads(reply or b"{}")
        except ValueError:
            answer = {"error": {"desc": reply.decode(errors="replace")}}
        if "error" in answer:
            raise allocated_error(binding, f"slirp4netns: {answer['error'].get('desc', answer['error'])}")

    # pasta

    def _start_pasta(self, pid: int) -> None:
        pid_file = os.path.join(self.scratch, "pasta.pid")
        tcp = [f"{b.host_ip}/{b.host_port}:{b.container_port}" for b in self.ports if b.protocol == "tcp"]
        udp = [f"{b.host_ip}/{b.host_port}:{b.container_port}" for b in self.ports if b.protocol == "udp"]
        args = ["pasta", "--config-net", "--quiet", "--pid", pid_file,
                "-t", ",".join(tcp) or "none", "-u", ",".join(udp) or "none", "-T", "none", "-U", "none",
                "--netns", f"/proc/{pid}/ns/net", "--userns", f"/proc/{pid}/ns/user"]
        # pasta goes to the background once the namespace is configured; its first process exits then.
        # NOTE: unlike slirp4netns with --exit-fd, a pasta whose owner was killed keeps running until
        # it notices that the namespace is gone; that was not checked with the passt in Debian 12.
        result = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=_STARTUP_TIMEOUT, check=False)
        try:
            with open(pid_file) as handle:
                self.helper_pid = int(handle.read().strip() or 0)
        except (OSError, ValueError):
            self.helper_pid = 0
        if result.returncode != 0:
            self.teardown()
            message = (result.stderr or result.stdout).strip()
            if "Address already in use" in message and self.ports:
                raise allocated_error(self.ports[0], f"pasta: {message}")
            raise ContainerError(f"pasta failed to configure the network of container {self.container_id[:12]}: "
                                 f"{message}; use --network host or --network none")

    # Helpers

    def teardown_keep_log(self) -> None:
        # Like teardown, but the scratch folder with the helper's log stays until the message is built.
        scratch, self.scratch = self.scratch, ""
        self.teardown()
        self.scratch = scratch

    def _helper_output(self, log_path: str) -> str:
        try:
            with open(log_path, errors="replace") as handle:
                text = handle.read().strip()
        except OSError:
            text = ""
        shutil.rmtree(self.scratch, ignore_errors=True)
        return text.splitlines()[-1] if text else "it exited without a message"


def _read_with_timeout(fd: int, timeout: float) -> bytes:
    import select

    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b""
        readable, _, _ = select.select([fd], [], [], remaining)
        if readable:
            return os.read(fd, 1)


def _stop_daemon(pid: int, grace: float = 2.0) -> None:
    """Stop a helper that went to the background (not our child): SIGTERM, wait for it to go, then SIGKILL.

    Waiting matters because the helper holds the published ports until it
    has exited, and the next container may want them at once.
    """
    import signal
    import time

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _running(pid):
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _running(pid: int) -> bool:
    """Return whether `pid` is alive and not a zombie waiting for init."""
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            state = stat_file.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"
