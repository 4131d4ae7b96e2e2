"""cgroups: the memory, CPU and process-count limits of --memory, --cpus and --pids-limit.

The launcher creates one cgroup per controller and writes the limits; the
container's init joins them (writing 0 to cgroup.procs means the writer)
before it executes the program, so every process of the container is
counted; `remove` deletes them once the init has been reaped.

Hosts differ: with cgroup v1 (or a hybrid layout) each controller has its
own hierarchy under /sys/fs/cgroup/<controller>, and the container gets
/sys/fs/cgroup/<controller>/layerlab/<id>. With cgroup v2 alone, one
directory /sys/fs/cgroup/layerlab/<id> has every controller. The cgroup2
mount of a hybrid layout has no controllers, so it is not used.
Containers without limits get no cgroup at all, which keeps `run` fast.
"""

from __future__ import annotations

import errno
import logging
import os
import time

from layerlab.engine.errors import ContainerError, InvalidArgumentError

log = logging.getLogger(__name__)

CGROUP_ROOT = "/sys/fs/cgroup"
PARENT = "layerlab"

# The CFS period Docker uses for --cpus, in microseconds.
CPU_PERIOD_US = 100_000

# The kernel may still be tearing down the last processes when the init
# has been reaped, so rmdir(2) gets EBUSY for a moment.
_REMOVE_ATTEMPTS = 50
_REMOVE_PAUSE_SECONDS = 0.02


def unified_only(root=CGROUP_ROOT):
    """Return True on a host with cgroup v2 alone (no v1 controllers)."""
    return os.path.exists(os.path.join(root, "cgroup.controllers"))


def _flag_names(resources):
    names = []
    if resources.memory:
        names.append("--memory")
    if resources.nano_cpus:
        names.append("--cpus")
    if resources.pids_limit:
        names.append("--pids-limit")
    return names


def wanted(resources):
    """Return True when `resources` (a specs.Resources) sets any limit."""
    return bool(_flag_names(resources))


def v1_files(resources):
    """Return {controller: {file: value}} for a cgroup v1 hierarchy."""
    files = {}
    if resources.memory:
        # Docker's default --memory-swap is twice --memory, so memsw (memory
        # plus swap) is 2x the limit where swap accounting is enabled.
        files["memory"] = {"memory.limit_in_bytes": str(resources.memory),
                           "memory.memsw.limit_in_bytes": str(2 * resources.memory)}
    if resources.nano_cpus:
        quota = resources.nano_cpus * CPU_PERIOD_US // 1_000_000_000
        files["cpu"] = {"cpu.cfs_period_us": str(CPU_PERIOD_US), "cpu.cfs_quota_us": str(quota)}
    if resources.pids_limit:
        files["pids"] = {"pids.max": str(resources.pids_limit)}
    return files


def v2_files(resources):
    """Return {file: value} for a cgroup v2 directory."""
    files = {}
    if resources.memory:
        files["memory.max"] = str(resources.memory)
        files["memory.swap.max"] = str(resources.memory)
    if resources.nano_cpus:
        files["cpu.max"] = f"{resources.nano_cpus * CPU_PERIOD_US // 1_000_000_000} {CPU_PERIOD_US}"
    if resources.pids_limit:
        files["pids.max"] = str(resources.pids_limit)
    return files


def _write(path, value, optional=False):
    try:
        with open(path, "w") as file:
            file.write(value)
    except OSError as error:
        if optional and error.errno in (errno.ENOENT, errno.EACCES, errno.EPERM):
            log.debug("cgroup: %s not written (%s); the host does not offer it", path, error.strerror)
            return
        raise ContainerError(f"cannot write {value!r} to {path}: {error.strerror}") from None


def check_allowed(resources):
    if os.geteuid() == 0:
        return
    # NOTE: delegated cgroup2 subtrees for ordinary users (systemd's Delegate=)
    # are not used yet, so every rootless limit is rejected.
    flags = " and ".join(_flag_names(resources))
    raise InvalidArgumentError(f"cannot apply {flags}: cgroups need root or a delegated cgroup2 subtree")


def create(container_id, resources, root=CGROUP_ROOT):
    """Create the container's cgroups with the limits in `resources`; return their paths (empty if none)."""
    if not wanted(resources):
        return []
    check_allowed(resources)

    paths = []
    try:
        if unified_only(root):
            parent = os.path.join(root, PARENT)
            os.makedirs(parent, exist_ok=True)
            controllers = " ".join(f"+{name}" for name in ("memory", "cpu", "pids"))
            _write(os.path.join(root, "cgroup.subtree_control"), controllers)
            _write(os.path.join(parent, "cgroup.subtree_control"), controllers)
            path = os.path.join(parent, container_id)
            os.mkdir(path)
            paths.append(path)
            for name, value in v2_files(resources).items():
                _write(os.path.join(path, name), value, optional=name == "memory.swap.max")
            return paths

        for controller, files in v1_files(resources).items():
            hierarchy = os.path.join(root, controller)
            if not os.path.isdir(hierarchy):
                raise ContainerError(f"cannot apply the {controller} limit: no cgroup v1 hierarchy at {hierarchy}")
            path = os.path.join(hierarchy, PARENT, container_id)
            os.makedirs(path)
            paths.append(path)
            for name, value in files.items():
                _write(os.path.join(path, name), value, optional=name == "memory.memsw.limit_in_bytes")
    except BaseException:
        remove(paths)
        raise
    log.debug("cgroups of container %s: %s", container_id, ", ".join(paths))
    return paths


def join(paths):
    """Move the calling process into each cgroup in `paths`."""
    for path in paths:
        _write(os.path.join(path, "cgroup.procs"), "0")


def remove(paths):
    """Remove the cgroups in `paths`, waiting briefly for their last processes to go."""
    for path in paths:
        for attempt in range(_REMOVE_ATTEMPTS):
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError as error:
                if error.errno != errno.EBUSY or attempt == _REMOVE_ATTEMPTS - 1:
                    log.warning("cannot remove cgroup %s: %s", path, error.strerror)
                    break
                time.sleep(_REMOVE_PAUSE_SECONDS)
