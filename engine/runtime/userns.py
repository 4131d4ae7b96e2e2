"""User namespaces for rootless use: the id mapping, and entering a namespace from a forked child.

An ordinary user cannot mount, chown to other ids or create PID namespaces
on the host. Inside a user namespace that it creates, it is root, with
every capability over the namespaces that namespace owns. The namespace
maps container id 0 to the user. With a range in /etc/subuid and
/etc/subgid, ids 1..count map to that range through the setuid helpers
newuidmap and newgidmap (shadow's uidmap package), as podman does.
Without one, only id 0 is mapped, and setgroups(2) must be denied
before the gid map can be written (user_namespaces(7)).

The child unshares CLONE_NEWUSER and waits, and the parent writes the maps,
because newuidmap runs in the parent's namespace and takes the child's pid.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
from dataclasses import dataclass

from layerlab.engine.errors import ContainerError
from layerlab.engine.runtime import syscalls
from layerlab.engine.runtime.child_errors import receive_error, report_error

log = logging.getLogger(__name__)

# The uid_map of the initial user namespace: every id maps to itself.
_IDENTITY_MAP = ("0", "0", "4294967295")

_READY = b"r"
_MAPPED = b"m"


@dataclass(frozen=True)
class IdRange:
    """Container ids `inside`..`inside + count - 1` map to host ids `outside`..`outside + count - 1`."""

    inside: int
    outside: int
    count: int

    def __str__(self):
        if self.count == 1:
            return f"{self.inside}->{self.outside}"
        return f"{self.inside}-{self.inside + self.count - 1}->{self.outside}-{self.outside + self.count - 1}"


@dataclass(frozen=True)
class IdMapping:
    """The uid and gid maps that a rootless container's user namespace gets."""

    uids: tuple[IdRange, ...]
    gids: tuple[IdRange, ...]
    subordinate: bool  # True when /etc/subuid and /etc/subgid ranges are used

    def describe(self):
        kind = "subordinate ranges from /etc/subuid and /etc/subgid" if self.subordinate else "single id"
        uids = ", ".join(str(item) for item in self.uids)
        gids = ", ".join(str(item) for item in self.gids)
        return f"{kind}: uid {uids}; gid {gids}"


def needs_user_namespace():
    """Return True when the engine runs as an ordinary user and must create a user namespace."""
    return os.geteuid() != 0


def in_user_namespace():
    """Return True when the calling process is in a user namespace other than the initial one."""
    try:
        with open("/proc/self/uid_map") as file:
            lines = file.read().split("\n")
    except OSError:
        return False
    return tuple(lines[0].split()) != _IDENTITY_MAP or bool(lines[1:] and lines[1].strip())


def host_uid():
    """Return the calling process's effective uid as the initial user namespace sees it."""
    uid = os.geteuid()
    try:
        with open("/proc/self/uid_map") as file:
            lines = file.read().splitlines()
    except OSError:
        return uid
    # Only the direct parent namespace's ids are shown. For the one level
    # of nesting that layerlab creates, that is the host's.
    for line in lines:
        fields = line.split()
        if len(fields) == 3:
            inside, outside, count = (int(field) for field in fields)
            if inside <= uid < inside + count:
                return outside + uid - inside
    return uid


def _subordinate_range(path, name, uid):
    # Lines are "user:first:count", where user is a name or a numeric id (subuid(5)).
    try:
        with open(path) as file:
            lines = file.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in (name, str(uid)):
            continue
        try:
            first, count = int(fields[1]), int(fields[2])
        except ValueError:
            log.warning("ignoring malformed line %r in %s", line, path)
            continue
        if count > 0:
            return first, count
    return None


def host_mapping(subuid_path="/etc/subuid", subgid_path="/etc/subgid"):
    """Return the IdMapping for the calling user: subordinate ranges when usable, else the single id."""
    uid, gid = os.geteuid(), os.getegid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)

    uid_range = _subordinate_range(subuid_path, name, uid)
    gid_range = _subordinate_range(subgid_path, name, uid)
    helpers = shutil.which("newuidmap") and shutil.which("newgidmap")
    if uid_range and gid_range and helpers:
        return IdMapping(
            uids=(IdRange(0, uid, 1), IdRange(1, uid_range[0], uid_range[1])),
            gids=(IdRange(0, gid, 1), IdRange(1, gid_range[0], gid_range[1])),
            subordinate=True,
        )
    if (uid_range or gid_range) and not helpers:
        log.warning("subordinate ids for %s exist but newuidmap/newgidmap are missing (install the uidmap "
                    "package); mapping only uid %d", name, uid)
    return IdMapping(uids=(IdRange(0, uid, 1),), gids=(IdRange(0, gid, 1),), subordinate=False)


def write_id_maps(pid, mapping):
    """Write the uid and gid maps of the process `pid`, which has just unshared CLONE_NEWUSER."""
    if mapping.subordinate:
        import subprocess

        for helper, ranges in (("newuidmap", mapping.uids), ("newgidmap", mapping.gids)):
            args = [helper, str(pid)]
            for item in ranges:
                args += [str(item.inside), str(item.outside), str(item.count)]
            result = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise ContainerError(
                    f"{' '.join(args)} failed with exit code {result.returncode}: {result.stderr.strip()}; "
                    f"check the ranges in /etc/subuid and /etc/subgid and that {helper} is setuid root"
                )
        return

    # An unprivileged process may write a single-id gid map only after
    # setgroups(2) is denied in the namespace.
    _write_proc_file(pid, "setgroups", "deny")
    _write_proc_file(pid, "uid_map", "".join(f"{r.inside} {r.outside} {r.count}\n" for r in mapping.uids))
    _write_proc_file(pid, "gid_map", "".join(f"{r.inside} {r.outside} {r.count}\n" for r in mapping.gids))


def _write_proc_file(pid, name, text):
    path = f"/proc/{pid}/{name}"
    try:
        with open(path, "w") as file:
            file.write(text)
    except OSError as error:
        raise ContainerError(f"writing {text.strip()!r} to {path} failed: {error.strerror}") from None


def setgroups_allowed():
    """Return False when setgroups(2) is denied in the calling process's user namespace."""
    try:
        with open("/proc/self/setgroups") as file:
            return file.read().strip() != "deny"
    except OSError:
        return True


class MappingHandshake:
    """Two pipes that order unshare(CLONE_NEWUSER) in a child before the parent writes its maps.

    Create it before fork, then call `enter` in the child and `map` in the parent.
    """

    def __init__(self):
        self._ready_read, self._ready_write = os.pipe2(os.O_CLOEXEC)
        self._mapped_read, self._mapped_write = os.pipe2(os.O_CLOEXEC)

    def enter(self):
        """Unshare the user namespace and block until the parent has written its id maps."""
        os.close(self._ready_read)
        os.close(self._mapped_write)
        try:
            syscalls.unshare(syscalls.CLONE_NEWUSER)
            os.write(self._ready_write, _READY)
        finally:
            os.close(self._ready_write)
        try:
            reply = os.read(self._mapped_read, 1)
        finally:
            os.close(self._mapped_read)
        if reply != _MAPPED:
            raise ContainerError("id maps missing: the launcher failed to write this user namespace's maps and reports why")

    def map(self, pid, mapping):
        """Write the maps of child `pid` once it has unshared, and return True.

        Returns False when the child failed before unsharing, and then its
        error is on the caller's error pipe.
        """
        os.close(self._ready_write)
        os.close(self._mapped_read)
        try:
            if os.read(self._ready_read, 1) != _READY:
                return False
            write_id_maps(pid, mapping)
            os.write(self._mapped_write, _MAPPED)
            return True
        finally:
            os.close(self._ready_read)
            os.close(self._mapped_write)


def call_in_user_namespace(fn, *, mapping=None, while_running=None):
    """Call fn() as root of a new user namespace in a forked child and return its result.

    The result travels back pickled, and an exception is raised again here
    as `run_in_rootfs` does. `while_running`, if given, is called in the
    parent once the maps are written and before the result is read, so it
    can consume a pipe that fn writes to. The namespace has the mapping that
    containers get, so lchown(2) to mapped ids works and files owned by
    subordinate ids are readable with CAP_DAC_OVERRIDE.
    """
    import pickle

    mapping = mapping or host_mapping()
    handshake = MappingHandshake()
    error_read, error_write = os.pipe2(os.O_CLOEXEC)
    result_read, result_write = os.pipe2(os.O_CLOEXEC)

    pid = os.fork()
    if pid == 0:
        _run_call_child(fn, handshake, (error_read, error_write), (result_read, result_write))

    os.close(error_write)
    os.close(result_write)
    try:
        if handshake.map(pid, mapping) and while_running is not None:
            while_running()
        data = _read_all(result_read)
    except BaseException:
        os.close(result_read)
        os.close(error_read)
        os.waitpid(pid, 0)
        raise
    os.close(result_read)

    error = receive_error(error_read)
    _, status = os.waitpid(pid, 0)
    if error is not None:
        raise error
    if status != 0 or not data:
        raise ContainerError(f"user namespace child exited with status {os.waitstatus_to_exitcode(status)}")
    return pickle.loads(data)


def _run_call_child(fn, handshake, error_pipe, result_pipe):
    # Runs in the forked child and never returns.
    error_read, error_write = error_pipe
    result_read, result_write = result_pipe
    exit_code = 0
    try:
        os.close(error_read)
        os.close(result_read)
        handshake.enter()

        import pickle

        data = memoryview(pickle.dumps(fn()))
        while data:
            data = data[os.write(result_write, data):]
    except BaseException as error:
        exit_code = 1
        # The parent reads the result pipe to its end before the error pipe,
        # so close it first or a large error would block.
        try:
            os.close(result_write)
        except OSError:
            pass
        report_error(error_write, error)
    finally:
        os._exit(exit_code)


def _read_all(fd):
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)
