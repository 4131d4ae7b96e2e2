"""A private Docker Engine for differential tests.

It runs with its own data root, exec root and socket, no bridge and no
iptables rules, so it touches nothing outside its directories, and it is
stopped by the pid in its pidfile. It has no registry in reach: base images
come from `docker import` of the rootfs tarballs that layerlab bootstraps.
"""

import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

log = logging.getLogger(__name__)

START_TIMEOUT = 60
STOP_TIMEOUT = 30

# The client that ships with Debian's docker.io matches its daemon's API
# version; another docker first on PATH may be newer than the daemon.
DOCKER_CLIENTS = ("/usr/bin/docker", "docker")


def find_tool(candidates):
    for candidate in candidates:
        path = shutil.which(candidate)
        if path:
            return path
    return None


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def processes_mentioning(text, name):
    """Return the pids of processes called `name` whose command line contains `text`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0].decode(errors="replace")) == name:
            if text.encode() in b" ".join(argv):
                pids.append(int(entry.name))
    return pids


def mounts_under(prefix):
    prefix = str(prefix).rstrip("/")
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as table:
        for line in table:
            target = line.split()[4].encode().decode("unicode_escape")
            if target == prefix or target.startswith(prefix + "/"):
                found.append(target)
    return found


class PrivateDockerd:
    """A dockerd started with private directories; use `start()`, then `stop()`."""

    def __init__(self, dockerd, docker):
        self.dockerd = dockerd
        self.docker_client = docker
        # The exec root contains unix sockets, whose paths must stay under
        # 108 bytes, so it gets a short name under /tmp.
        self.exec_root = Path(tempfile.mkdtemp(prefix="lldkr-", dir="/tmp"))
        self.base = Path(tempfile.mkdtemp(prefix="layerlab-dockerd-", dir="/var/tmp"))
        self.data_root = self.base / "data"
        self.config_dir = self.base / "client"
        self.log_path = self.base / "dockerd.log"
        self.socket = self.exec_root / "docker.sock"
        self.pidfile = self.exec_root / "pid"
        self.process = None
        self.env = dict(
            os.environ,
            DOCKER_HOST=f"unix://{self.socket}",
            DOCKER_CONFIG=str(self.config_dir),
        )

    def command(self):
        return [
            self.dockerd,
            "--data-root", str(self.data_root),
            "--exec-root", str(self.exec_root),
            "-H", f"unix://{self.socket}",
            "--pidfile", str(self.pidfile),
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
        ]

    def start(self):
        """Start dockerd and wait until `docker version` succeeds against it."""
        self.config_dir.mkdir()
        started = time.monotonic()
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                self.command(), stdout=log_file, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )

        deadline = started + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited with status {self.process.returncode}:\n{self.log_tail()}")
            probe = self.docker("version", "--format", "{{.Server.Version}}", check=False)
            if probe.returncode == 0:
                self.start_seconds = time.monotonic() - started
                log.info("dockerd %s is up in %.1f s at %s", probe.stdout.strip(), self.start_seconds, self.socket)
                return self
            time.sleep(0.2)

        self.stop()
        raise TimeoutError(f"dockerd timed out: no response on {self.socket} within {START_TIMEOUT} s:\n{self.log_tail()}")

    def log_tail(self, lines=30):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def docker(self, *args, check=True, input=None, timeout=300):
        """Run the docker client against this daemon; returns the CompletedProcess."""
        result = subprocess.run(
            [self.docker_client, *map(str, args)],
            env=self.env, input=input, capture_output=True, text=True,
            timeout=timeout, check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(map(str, args))} failed with exit status "
                f"{result.returncode}:\n{result.stderr}"
            )
        return result

    def import_rootfs(self, tar_path, ref, cmd=("sh",)):
        """Import a rootfs tarball as image `ref` with `cmd` as its Cmd; returns the image ID."""
        change = "CMD " + json.dumps(list(cmd))
        result = self.docker("import", "--change", change, str(tar_path), ref)
        return result.stdout.strip()

    def daemon_pid(self):
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return self.process.pid if self.process else None

    def stop(self):
        """Stop dockerd by its pidfile, then remove its directories; returns what was left behind."""
        leftovers = []
        pid = self.daemon_pid()
        if pid and process_alive(pid):
            os.kill(pid, signal.SIGTERM)
            self.wait_for_exit(pid)

        # dockerd stops the containerd it started; kill one that outlived it.
        for stray in processes_mentioning(str(self.exec_root), "containerd"):
            leftovers.append(f"containerd pid {stray}")
            os.kill(stray, signal.SIGKILL)

        for target in sorted(mounts_under(self.base) + mounts_under(self.exec_root), reverse=True):
            leftovers.append(f"mount {target}")
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)

        shutil.rmtree(self.base, ignore_errors=True)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        if leftovers:
            log.warning("dockerd left behind: %s", ", ".join(leftovers))
        return leftovers

    def wait_for_exit(self, pid):
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process and self.process.pid == pid:
                if self.process.poll() is not None:
                    return
            elif not process_alive(pid):
                return
            time.sleep(0.1)

        log.warning("dockerd pid %d did not stop within %d s; killing it", pid, STOP_TIMEOUT)
        os.kill(pid, signal.SIGKILL)
        if self.process:
            self.process.wait(timeout=STOP_TIMEOUT)


def in_ci():
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session", name="dockerd")
def dockerd_fixture():
    """A running private Docker Engine, stopped and removed after the session."""
    dockerd = shutil.which("dockerd")
    docker = find_tool(DOCKER_CLIENTS)
    if dockerd is None or docker is None:
        reason = "dockerd or docker is not installed; install it with: apt-get install -y docker.io"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)

    daemon = PrivateDockerd(dockerd, docker).start()
    yield daemon

    leftovers = daemon.stop()
    assert not leftovers, f"the private dockerd left behind: {', '.join(leftovers)}"
