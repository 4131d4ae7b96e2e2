"""podman with private storage, for differential tests.

Each `PrivatePodman` has its own containers-storage (the vfs driver, which
mounts nothing), run root, libpod tmp dir, auth file and cgroup parent,
so it shares no state with the host's podman. Containers run with runc and
cgroupfs, because crun rejects a hybrid cgroup layout, and with ulimits
below the hard limits, because root here may lack CAP_SYS_RESOURCE.
`cleanup()` removes all of it.

NOTE: pulls and pushes still update containers/image's blob info cache in
/var/lib/containers/cache, which podman 4.3 has no flag to move.
"""

import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.oracle.dockerd import in_ci, mounts_under, processes_mentioning

log = logging.getLogger(__name__)

# podman rejects a run root path longer than 50 characters.
MAX_RUNROOT_LENGTH = 50
# conmon starts `podman container cleanup` when a container exits, which may outlive `podman run`.
EXIT_TIMEOUT = 30


def ulimit_flags():
    """Return `--ulimit` flags for nofile and nproc at 1024, or the hard limit when it is lower.

    podman's defaults ask runc for more than the hard limit, and runc fails
    when root lacks CAP_SYS_RESOURCE to raise it.
    """
    flags = []
    for name, limit in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        hard = resource.getrlimit(limit)[1]
        value = 1024 if hard == resource.RLIM_INFINITY else min(1024, hard)
        flags += ["--ulimit", f"{name}={value}:{value}"]
    return flags


def cgroup_mounts():
    """Return the mount points of the cgroup v1 hierarchies and the cgroup v2 tree."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as table:
        for line in table:
            fields = line.split()
            filesystem = fields[fields.index("-") + 1]
            if filesystem in ("cgroup", "cgroup2"):
                points.append(fields[4])
    return points


class PrivatePodman:
    """podman on private storage under `base`. Call `cleanup()` when done."""

    def __init__(self, podman, base):
        self.podman_path = podman
        self.root = Path(base) / "podman-root"
        self.runroot = Path(tempfile.mkdtemp(prefix="llpod-", dir="/tmp"))
        if len(str(self.runroot)) > MAX_RUNROOT_LENGTH:
            raise RuntimeError(f"podman run root {self.runroot} is over {MAX_RUNROOT_LENGTH} characters")
        self.auth_file = Path(base) / "podman-auth.json"
        self.auth_file.write_text("{}")
        self.cgroup_parent = f"/layerlab-test-{self.runroot.name}"
        # REGISTRY_AUTH_FILE keeps podman from reading or writing root's own credentials.
        self.env = dict(os.environ, REGISTRY_AUTH_FILE=str(self.auth_file))

    def command(self, *args):
        return [
            self.podman_path,
            "--root", str(self.root),
            "--runroot", str(self.runroot),
            "--tmpdir", str(self.runroot / "libpod"),
            "--storage-driver", "vfs",
            "--events-backend", "none",
            "--cgroup-manager", "cgroupfs",
            "--runtime", "runc",
            *map(str, args),
        ]

    def podman(self, *args, check=True, timeout=300):
        """Run podman with this storage and return the CompletedProcess."""
        result = subprocess.run(self.command(*args), env=self.env, capture_output=True, text=True,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(map(str, args))} failed with exit status {result.returncode}:\n{result.stderr}"
            )
        return result

    def inspect_image(self, ref):
        """Return podman's `image inspect` document for `ref`."""
        return json.loads(self.podman("image", "inspect", ref).stdout)[0]

    def import_rootfs(self, tar_path, ref, cmd=("sh",)):
        """Import a rootfs tarball as image `ref` with `cmd` as its Cmd and return the image ID."""
        change = "CMD " + json.dumps(list(cmd))
        return self.podman("import", "-q", "--change", change, tar_path, ref).stdout.strip()

    def run(self, image, *command, check=False):
        """Run `command` in a throwaway container of `image` with no network and return the CompletedProcess."""
        if shutil.which("runc") is None:
            pytest.skip("runc is not installed, and podman here needs it: apt-get install -y runc")
        return self.podman("run", "--rm", "--network", "none", "--cgroup-parent", self.cgroup_parent,
                           *ulimit_flags(), image, *command, check=check)

    def cleanup(self):
        """Remove every container, image and directory of this storage and return what was left behind."""
        leftovers = []
        for args in (("rm", "--all", "--force", "--time", "0"), ("rmi", "--all", "--force")):
            result = self.podman(*args, check=False, timeout=120)
            if result.returncode != 0:
                leftovers.append(f"podman {' '.join(args)} failed: {result.stderr.strip()}")

        leftovers += self._stop_processes()
        for target in sorted(mounts_under(self.root) + mounts_under(self.runroot), reverse=True):
            leftovers.append(f"mount {target}")
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)
        self._remove_cgroups()

        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)
        self.auth_file.unlink(missing_ok=True)
        if leftovers:
            log.warning("podman left behind: %s", ", ".join(leftovers))
        return leftovers

    def _stop_processes(self):
        """Wait for this storage's conmon and podman processes to exit. Kill and report those that do not."""
        deadline = time.monotonic() + EXIT_TIMEOUT
        while True:
            running = [pid for name in ("conmon", "podman") for pid in processes_mentioning(str(self.runroot), name)]
            if not running:
                return []
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)

        leftovers = []
        for pid in running:
            leftovers.append(f"process {pid}")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return leftovers

    def _remove_cgroups(self):
        # conmon runs in <parent>/conmon and runc removes the container's own cgroup, so only empty folders remain.
        for mount_point in cgroup_mounts():
            top = Path(mount_point) / self.cgroup_parent.lstrip("/")
            if not top.is_dir():
                continue
            folders = [path for path, _, _ in os.walk(top)]
            for folder in sorted(folders, key=len, reverse=True):
                try:
                    os.rmdir(folder)
                except OSError as error:
                    log.warning("could not remove cgroup %s: %s", folder, error)


def find_podman():
    """Return the podman binary, or skip the test (fail it in CI, whose set-up installs podman)."""
    path = shutil.which("podman")
    if path is None:
        reason = "podman is not installed; install it with: apt-get install -y podman"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture(name="podman")
def podman_fixture(tmp_path):
    """podman with private storage for one test, removed afterwards."""
    podman = PrivatePodman(find_podman(), tmp_path)
    yield podman

    leftovers = podman.cleanup()
    assert not leftovers, f"podman left behind: {', '.join(leftovers)}"
