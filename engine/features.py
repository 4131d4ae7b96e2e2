"""Probes of what this host offers the engine, for `layerlab info`.

Hosts differ in kernel version, cgroup layout and installed helpers, so
the engine tests them here instead of assuming, and reports the fallbacks
it takes.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

log = logging.getLogger(__name__)


def cgroup_version() -> str:
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "2"
    if os.path.isdir("/sys/fs/cgroup/unified"):
        return "1 (hybrid: v1 controllers plus a cgroup2 mount at /sys/fs/cgroup/unified)"
    return "1"


def seccomp_support() -> str:
    """Describe kernel seccomp support and whether libseccomp is installed."""
    kernel = "no"
    try:
        with open("/proc/self/status") as status:
            if any(line.startswith("Seccomp:") for line in status):
                kernel = "yes"
    except OSError:
        kernel = "unknown"
    from layerlab.engine.runtime import seccomp

    version = seccomp.library_version()
    if not version:
        return (f"kernel {kernel}, {seccomp.LIBRARY} not found; containers fail to start unless run with "
                "--security-opt seccomp=unconfined (install libseccomp2)")
    return f"kernel {kernel}, libseccomp {version}; containers get Docker's default profile"


def probe_userns_overlay(scratch_parent: str) -> tuple[bool, str]:
    """Mount an overlay with `userxattr` inside a user namespace, under `scratch_parent`.

    Returns (works, detail), where detail is the text for `layerlab info`.
    """
    from layerlab.engine.runtime.userns import call_in_user_namespace

    scratch = tempfile.mkdtemp(prefix="probe-overlay-", dir=scratch_parent)

    def mount_and_write():
        from layerlab.engine.runtime import syscalls
        from layerlab.engine.runtime.overlay import mount_overlay
        from layerlab.engine.runtime.specs import RootfsSpec

        names = ("lower", "upper", "work", "merged")
        for name in names:
            os.mkdir(os.path.join(scratch, name))
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        paths = [os.path.join(scratch, name) for name in names]
        mount_overlay(RootfsSpec([paths[0]], paths[1], paths[2]), paths[3])
        os.mkdir(os.path.join(paths[3], "dir"))
        syscalls.umount2(paths[3])
        # overlayfs leaves its work dir with mode 000, so only this namespace's root can delete it.
        shutil.rmtree(scratch)
        return True

    try:
        call_in_user_namespace(mount_and_write)
        return True, "yes (overlayfs with userxattr, Linux 5.11+)"
    except Exception as error:  # noqa: BLE001 - the probe reports any failure as its result
        log.debug("overlay probe in a user namespace failed: %s", error)
        return False, f"no ({error})"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def rootless_report(engine) -> dict[str, str]:
    """Return the `info` lines about user namespaces, overlay, seccomp and the fallbacks in use."""
    from layerlab.engine.runtime.userns import host_mapping

    lines: dict[str, str] = {}
    fallbacks: list[str] = []
    if not engine.rootless:
        lines["User namespace"] = "not used (running as root)"
        lines["Overlay in user namespace"] = "not needed (running as root)"
    else:
        mapping = host_mapping()
        lines["User namespace"] = mapping.describe()
        if not mapping.subordinate:
            fallbacks.append(
                "single-id mapping: only container uid/gid 0 exist, so USER and chown to other ids fail "
                "(add ranges to /etc/subuid and /etc/subgid and install newuidmap)"
            )
        works, detail = probe_userns_overlay(engine.store.tmp_dir)
        lines["Overlay in user namespace"] = detail
        if not works:
            fallbacks.append("overlayfs cannot be mounted in a user namespace here, so containers cannot start")
        fallbacks.append("/dev nodes are bind mounts of the host's (mknod of devices is not allowed in a user namespace)")
        fallbacks.append("/sys is the host's, bound read-only, with --network host")
    lines["Cgroup version"] = cgroup_version()
    lines["Seccomp"] = seccomp_support()
    lines["Fallbacks"] = "; ".join(fallbacks) if fallbacks else "none"
    return lines
