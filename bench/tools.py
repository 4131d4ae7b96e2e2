"""The tools under comparison, each with a private store set up and removed by the bench.

- layerlab: the CLI (a fresh interpreter per command) and a warm worker
  process that calls `layerlab.engine.cli.main.main` again and again, as the
  kernel does.
- podman and buildah: one private containers-storage (overlay driver) that
  both use, with runc as the OCI runtime.
- docker: a private dockerd from tests/oracle/dockerd.py.
- runc and crun: `run` of an OCI bundle whose rootfs is the busybox tarball
  unpacked into a plain directory, with no overlay.

Every base image comes from the one busybox tarball that
`build_busybox_rootfs` writes, the builder behind `layerlab bootstrap busybox`.
"""

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import ToolUnavailable, run_checked, timed, unmount_all

REPO = Path(__file__).resolve().parent.parent
BUSYBOX = "busybox:latest"


def tool_version(command):
    try:
        return run_checked(command).strip().splitlines()[0]
    except (RuntimeError, OSError, IndexError) as error:
        return f"unavailable: {error}"


def require(name):
    path = shutil.which(name)
    if path is None:
        raise ToolUnavailable(f"{name} is not installed")
    return path


class Layerlab:
    """The layerlab CLI against a private LAYERLAB_ROOT."""

    def __init__(self, base):
        self.root = base / "layerlab"
        self.env = dict(os.environ, LAYERLAB_ROOT=str(self.root))
        # The console script next to this interpreter: no pyenv shim in between.
        script = Path(sys.executable).parent / "layerlab"
        self.command = [str(script)] if script.exists() else [sys.executable, "-m", "layerlab"]
        self.worker = None

    def __call__(self, *args):
        return [*self.command, *args]

    def run(self, *args):
        return run_checked(self(*args), env=self.env)

    def time(self, *args):
        return timed(self(*args), env=self.env)

    def setup(self):
        self.run("bootstrap", "busybox")

    def start_worker(self):
        """Start the warm in-process worker (bench/warm.py) and return it."""
        self.worker = WarmWorker(self.env)
        return self.worker

    def cleanup(self):
        if self.worker:
            self.worker.close()
        if self.root.exists():
            ids = subprocess.run(self("ps", "-aq"), env=self.env, capture_output=True, text=True, check=False)
            for container in ids.stdout.split():
                subprocess.run(self("rm", "-f", container), env=self.env, capture_output=True, check=False)
        unmount_all([self.root])
        shutil.rmtree(self.root, ignore_errors=True)


class WarmWorker:
    """One long-lived interpreter running layerlab commands in-process (bench/warm.py)."""

    def __init__(self, env):
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("warm.py"))],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )

    def time(self, *args):
        """Return the seconds `main(args)` took inside the worker; raise RuntimeError if it failed."""
        self.process.stdin.write(json.dumps(list(args)) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the warm worker exited with status {self.process.wait()}")
        reply = json.loads(line)
        if reply["status"] != 0:
            raise RuntimeError(f"layerlab {' '.join(args)} exited with status {reply['status']} in the warm worker")
        return reply["seconds"]

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run_limits():
    """`--ulimit` flags within this process's hard limits.

    Root here may lack CAP_SYS_RESOURCE, and podman's and buildah's defaults
    ask runc for more open files and processes than the hard limit, which
    fails; 1024 is below any hard limit that a usable host has.
    """
    flags = []
    for name, limit in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        hard = resource.getrlimit(limit)[1]
        value = 1024 if hard == resource.RLIM_INFINITY else min(1024, hard)
        flags += ["--ulimit", f"{name}={value}:{value}"]
    return flags


class Containers:
    """podman and buildah on one private containers-storage, with runc as the runtime."""

    def __init__(self, base):
        self.podman_path = require("podman")
        self.buildah_path = shutil.which("buildah")
        self.root = base / "containers-storage"
        # podman rejects a runroot path longer than 50 characters.
        self.runroot = Path(tempfile.mkdtemp(prefix="llb-", dir="/tmp"))
        self.storage = ["--root", str(self.root), "--runroot", str(self.runroot), "--storage-driver", "overlay"]
        self.limits = run_limits()

    def podman(self, *args):
        return [
            self.podman_path, *self.storage, "--tmpdir", str(self.runroot / "libpod"),
            "--cgroup-manager", "cgroupfs", "--events-backend", "none", "--runtime", "runc", *args,
        ]

    def buildah(self, *args):
        if self.buildah_path is None:
            raise ToolUnavailable("buildah is not installed")
        return [self.buildah_path, *self.storage, *args]

    def buildah_build(self, context, tag, *flags):
        return self.buildah("bud", "-q", "--layers", "--runtime", "runc", "--network", "none",
                            *self.limits, *flags, "-t", tag, str(context))

    def setup(self, rootfs_tar):
        run_checked(self.podman("import", "-q", "--change", "CMD [\"sh\"]", str(rootfs_tar),
                                "docker.io/library/" + BUSYBOX))

    def cleanup(self):
        for command in (self.podman("rm", "-af"), self.podman("rmi", "-af")):
            subprocess.run(command, capture_output=True, check=False, timeout=300)
        if self.buildah_path:
            subprocess.run(self.buildah("rm", "--all"), capture_output=True, check=False, timeout=300)
        unmount_all([self.root, self.runroot])
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)


class Docker:
    """A private dockerd (tests/oracle/dockerd.py) with busybox imported from the tarball."""

    def __init__(self):
        require("dockerd")
        sys.path.insert(0, str(REPO))
        from tests.oracle.dockerd import DOCKER_CLIENTS, PrivateDockerd, find_tool

        client = find_tool(DOCKER_CLIENTS)
        if client is None:
            raise ToolUnavailable("the docker client is not installed")
        self.daemon = PrivateDockerd(shutil.which("dockerd"), client)

    def __call__(self, *args):
        return [self.daemon.docker_client, *args]

    def env(self, buildkit=None):
        env = dict(self.daemon.env)
        if buildkit is not None:
            env["DOCKER_BUILDKIT"] = "1" if buildkit else "0"
        return env

    def time(self, *args, buildkit=None):
        return timed(self(*args), env=self.env(buildkit))

    def run(self, *args):
        return run_checked(self(*args), env=self.env())

    def setup(self, rootfs_tar):
        self.daemon.start()
        self.daemon.import_rootfs(rootfs_tar, BUSYBOX)

    def cleanup(self):
        return self.daemon.stop()


class OciRuntime:
    """`runc run` or `crun run` of a bundle made from the busybox tarball."""

    def __init__(self, name, bundle, base):
        self.path = require(name)
        self.name = name
        self.bundle = bundle
        self.state = base / f"{name}-state"
        self.count = 0

    def time_run(self):
        self.count += 1
        extra = ["--cgroup-manager=disabled"] if self.name == "crun" else []
        return timed([self.path, "--root", str(self.state), *extra, "run", "--bundle", str(self.bundle),
                      f"llbench-{os.getpid()}-{self.count}"])

    def cleanup(self):
        if not self.state.exists():
            return
        listing = subprocess.run([self.path, "--root", str(self.state), "list", "-q"],
                                 capture_output=True, text=True, check=False)
        for container in listing.stdout.split():
            subprocess.run([self.path, "--root", str(self.state), "delete", "-f", container],
                           capture_output=True, check=False)
        shutil.rmtree(self.state, ignore_errors=True)


def make_bundle(rootfs_tar, bundle):
    """Unpack the tarball into `bundle/rootfs` and write a config.json that runs `true`."""
    runc = require("runc")
    (bundle / "rootfs").mkdir(parents=True)
    run_checked(["tar", "-xf", str(rootfs_tar), "-C", str(bundle / "rootfs")])
    run_checked([runc, "spec"], cwd=bundle)
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["true"]
    config_path.write_text(json.dumps(config, indent=1))
