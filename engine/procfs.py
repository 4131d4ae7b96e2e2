"""Processes seen through /proc: liveness, waiting for a non-child, namespace members and `top` rows.

Detached containers outlive the command that started them, so the CLI
deals with processes that are not its children: it cannot waitpid(2) them,
and their PIDs may be reused once they are gone. The helpers here wait
with pidfds and check a process's identity before anyone signals it.
"""

from __future__ import annotations

import logging
import os
import pwd
import select
from dataclasses import dataclass

log = logging.getLogger(__name__)

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def is_alive(pid: int) -> bool:
    """Return True if `pid` exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        return _stat_fields(pid)[0] != "Z"
    except OSError:
        return False


def is_namespace_init(pid: int) -> bool:
    """Return True if `pid` is PID 1 of a PID namespace other than ours: a container's init.

    After a container dies, the kernel may reuse its recorded PID for an
    unrelated process. Such a process is almost never the init of another
    PID namespace, so this check guards signals sent by PID.
    """
    if not is_alive(pid):
        return False
    try:
        if os.readlink(f"/proc/{pid}/ns/pid") == os.readlink("/proc/self/ns/pid"):
            return False
        return _status_field(pid, "NSpid").split()[-1] == "1"
    except (OSError, IndexError):
        return False


def command_line(pid: int) -> list[str]:
    """Return the argv of `pid`, or an empty list for a kernel thread or a process that is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            raw = file.read()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def wait_for_exit(pid: int, timeout: float | None = None) -> bool:
    """Wait until `pid` has exited, even if it is not our child; return False on timeout."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True

    # A pidfd becomes readable when the process exits (Linux 5.3).
    try:
        readable, _, _ = select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
    return bool(readable)


def namespace_members(init_pid: int) -> list[int]:
    """Return the host PIDs of every process in the PID namespace whose init is `init_pid`."""
    try:
        namespace = os.readlink(f"/proc/{init_pid}/ns/pid")
    except OSError:
        return []

    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{name}/ns/pid") == namespace:
                members.append(int(name))
        except OSError:
            continue
    return sorted(members)


@dataclass
class ProcessRow:
    """One line of `top`: a host PID, its owner, its CPU time and its command."""

    pid: int
    user: str
    cpu_seconds: int
    command: str


@dataclass
class ProcessesView:
    """The table `top` prints."""

    rows: list[ProcessRow]

    def text(self) -> str:
        lines = [("PID", "USER", "TIME", "COMMAND")]
        for row in self.rows:
            lines.append((str(row.pid), row.user, _cpu_time(row.cpu_seconds), row.command))
        widths = [max(len(line[column]) for line in lines) for column in range(3)]
        return "".join(
            "   ".join(cell.ljust(width) for cell, width in zip(line[:3], widths)) + "   " + line[3] + "\n"
            for line in lines
        )


def process_row(pid: int) -> ProcessRow | None:
    """Read one process's `top` row from /proc; None if it exited meanwhile."""
    try:
        fields = _stat_fields(pid)
        uid = int(_status_field(pid, "Uid").split()[0])
        comm = _comm(pid)
    except (OSError, IndexError, ValueError):
        return None

    # utime and stime are fields 14 and 15 of stat(5); _stat_fields starts at field 3.
    cpu_seconds = (int(fields[11]) + int(fields[12])) // _CLOCK_TICKS
    argv = command_line(pid)
    command = " ".join(argv) if argv else f"[{comm}]"
    return ProcessRow(pid, _user_name(uid), cpu_seconds, command)


def _cpu_time(seconds: int) -> str:
    # ps -ef's TIME column: [DD-]HH:MM:SS.
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def _user_name(uid: int) -> str:
    # The names come from the host's passwd file, as `docker top` runs the host's ps.
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _stat_fields(pid: int) -> list[str]:
    """Return the fields of /proc/PID/stat after the command name, starting with the state."""
    with open(f"/proc/{pid}/stat") as file:
        text = file.read()
    # The command name may contain spaces and parentheses, so split after its last ")".
    return text[text.rindex(")") + 2:].split()


def _status_field(pid: int, name: str) -> str:
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            key, _, value = line.partition(":")
            if key == name:
                return value.strip()
    raise OSError(f"/proc/{pid}/status has no {name} field")


def _comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as file:
        return file.read().rstrip("\n")
