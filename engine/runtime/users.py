"""The container user: ProcessSpec.user resolved against the image's /etc/passwd and /etc/group.

Follows runc's rules, which Docker uses. A name must exist in /etc/passwd,
but a numeric uid need not, and then its primary gid is 0 and its home "/".
A group given after ":" replaces the primary group and the supplementary
groups.
"""

import logging
from dataclasses import dataclass

from layerlab.engine.errors import ContainerError

log = logging.getLogger(__name__)


@dataclass
class ExecUser:
    """The ids and home directory that the container's process runs with."""

    uid: int
    gid: int
    groups: list[int]
    home: str


def _read_entries(path):
    # A missing file is an empty database, as in runc: images without
    # /etc/passwd run fine with numeric ids.
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        return []

    entries = []
    for line in lines:
        if line.strip() and not line.startswith("#"):
            entries.append(line.split(":"))
    return entries


def _as_id(text):
    return int(text) if text.isdigit() else None


def _find_user(passwd, spec):
    uid = _as_id(spec)
    for fields in passwd:
        if len(fields) < 7 or _as_id(fields[2]) is None or _as_id(fields[3]) is None:
            continue
        if fields[0] == spec or (uid is not None and _as_id(fields[2]) == uid):
            return fields
    return None


def _find_group(group_entries, spec):
    gid = _as_id(spec)
    for fields in group_entries:
        if len(fields) < 3 or _as_id(fields[2]) is None:
            continue
        if fields[0] == spec or (gid is not None and _as_id(fields[2]) == gid):
            return fields
    return None


def resolve_user(user, passwd_path="/etc/passwd", group_path="/etc/group"):
    """Resolve a Docker user string ("", "name", "uid", "name:group", "uid:gid") to an ExecUser."""
    user_part, _, group_part = (user or "root").partition(":")
    passwd = _read_entries(passwd_path)
    entry = _find_user(passwd, user_part)

    if entry is not None:
        name = entry[0]
        exec_user = ExecUser(uid=int(entry[2]), gid=int(entry[3]), groups=[], home=entry[5] or "/")
    elif user_part == "root" and not user:
        # The default user is root even in an image without /etc/passwd.
        name = None
        exec_user = ExecUser(uid=0, gid=0, groups=[], home="/root")
    elif _as_id(user_part) is not None:
        name = None
        exec_user = ExecUser(uid=int(user_part), gid=0, groups=[], home="/")
    else:
        raise ContainerError(f"unable to find user {user_part}: no matching entries in passwd file")

    group_entries = _read_entries(group_path)
    if group_part:
        exec_user.gid = _resolve_group(group_entries, group_part)
        exec_user.groups = [exec_user.gid]
        return exec_user

    exec_user.groups = [exec_user.gid]
    if name is not None:
        for fields in group_entries:
            gid = _as_id(fields[2]) if len(fields) >= 4 else None
            if gid is not None and name in fields[3].split(",") and gid not in exec_user.groups:
                exec_user.groups.append(gid)
    return exec_user


def _resolve_group(group_entries, group_part):
    entry = _find_group(group_entries, group_part)
    if entry is not None:
        return int(entry[2])
    if _as_id(group_part) is not None:
        return int(group_part)
    raise ContainerError(f"unable to find group {group_part}: no matching entries in group file")


def user_env(env, exec_user, hostname):
    """Return `env` with Docker's defaults added where missing: PATH, HOSTNAME and HOME.

    Docker starts from PATH and HOSTNAME, replaces or appends the image's and
    the user's variables, and its runtime appends HOME last, so PATH and
    HOSTNAME always come first in that order.
    """
    values = {}
    for item in env:
        name, _, value = item.partition("=")
        values.setdefault(name, value)
    first = [
        f"PATH={values.get('PATH', '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')}",
        f"HOSTNAME={values.get('HOSTNAME', hostname)}",
    ]
    rest = [item for item in env if item.partition("=")[0] not in ("PATH", "HOSTNAME")]
    result = first + rest
    if "HOME" not in values:
        result.append(f"HOME={exec_user.home}")
    return result
