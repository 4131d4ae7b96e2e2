"""Builder flags (`--name=value` before an instruction's arguments) and their values.

Flag kinds follow BuildKit's BFlags: a string flag needs `=value`, a bool
flag may stand alone or take true/false, and a repeatable flag collects
every value in order. `RUN --mount` values and HEALTHCHECK durations are
parsed here too.
"""

import csv
import difflib
import logging
import re
from dataclasses import dataclass

logger = logging.getLogger(__name__)

STRING = "string"
BOOL = "bool"
STRINGS = "strings"


class FlagError(ValueError):
    """A builder flag that is unknown, repeated or has a value of the wrong kind."""


@dataclass(frozen=True)
class FlagSpec:
    """One flag that an instruction accepts."""

    name: str
    kind: str = STRING


def parse_flags(words: list[str], specs: list[FlagSpec], keyword: str) -> dict[str, object]:
    """Return the value of every flag in `words`, keyed by flag name.

    String flags map to str, bool flags to bool and repeatable flags to a
    list of str. Flags that were not given are absent from the result.
    """
    by_name = {spec.name: spec for spec in specs}
    values = {}

    for word in words:
        name, has_value, value = word.removeprefix("--").partition("=")
        spec = by_name.get(name)
        if spec is None:
            raise FlagError(_unknown_flag_message(name, specs, keyword))

        if spec.kind != STRINGS and name in values:
            raise FlagError(f"duplicate flag specified: --{name}")

        values[name] = _flag_value(spec, has_value, value, values.get(name))
    return values


def _flag_value(spec, has_value, value, previous):
    if spec.kind == BOOL:
        if has_value and not value:
            raise FlagError(f"missing a value on flag: --{spec.name}")
        if not has_value:
            return True
        if value.lower() not in ("true", "false"):
            raise FlagError(f"expecting boolean value for flag --{spec.name}, not: {value}")
        return value.lower() == "true"

    if not has_value:
        raise FlagError(f"missing a value on flag: --{spec.name}")
    if spec.kind == STRINGS:
        return (previous or []) + [value]
    return value


def _unknown_flag_message(name, specs, keyword):
    if not specs:
        return f"unknown flag: --{name}; {keyword} takes no flags"

    valid = sorted(spec.name for spec in specs)
    message = f"unknown flag: --{name}"
    close = difflib.get_close_matches(name, valid, n=1)
    if close:
        message += f" (did you mean --{close[0]}?)"
    return message + "; valid flags for " + keyword + ": " + ", ".join("--" + flag for flag in valid)


MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_SHARING_MODES = ("shared", "private", "locked")
_TRUE_WORDS = ("1", "t", "T", "TRUE", "true", "True")
_FALSE_WORDS = ("0", "f", "F", "FALSE", "false", "False")

_KEY_ALIASES = {
    "src": "source",
    "dst": "target",
    "destination": "target",
    "ro": "readonly",
    "rw": "readwrite",
}


def parse_mount(spec: str) -> dict[str, object]:
    """Parse one `RUN --mount=` value (comma-separated key=value fields, CSV quoting).

    The result always has `type` and `readonly`. The keys `target`,
    `source`, `from`, `id`, `sharing`, `mode`, `uid`, `gid`, `size`, `env`
    and `required` appear when given, and a cache mount's `sharing`
    defaults to "shared". Values that still contain `$` are kept as text because the
    builder expands them before use. Raises FlagError.
    """
    fields = _split_csv(spec)
    mount = {"type": "bind"}
    readonly = None

    for field in fields:
        key, has_value, value = field.partition("=")
        if key.lower() == "type" and has_value:
            if value not in MOUNT_TYPES:
                raise FlagError(f"unsupported mount type {value!r}; use one of: {', '.join(MOUNT_TYPES)}")
            mount["type"] = value

    for field in fields:
        key, has_value, value = field.partition("=")
        key = _KEY_ALIASES.get(key.lower(), key.lower())
        if key == "type":
            continue
        if not has_value:
            readonly = _bare_mount_key(key, field, mount, readonly)
            continue
        readonly = _mount_field(mount, key, value, field, readonly)

    return _finish_mount(mount, readonly, spec)


def _split_csv(spec):
    try:
        rows = list(csv.reader([spec], skipinitialspace=False))
    except csv.Error as error:
        raise FlagError(f"invalid mount {spec!r}: {error}") from None
    fields = rows[0] if rows else []
    if not [field for field in fields if field]:
        raise FlagError("empty --mount value")
    return [field for field in fields if field]


def _bare_mount_key(key, field, mount, readonly):
    if key == "readonly":
        return True
    if key == "readwrite":
        return False
    if key == "required":
        _require_secret_or_ssh(mount, key)
        mount["required"] = True
        return readonly
    raise FlagError(f"invalid mount field {field!r}: expected a key=value pair")


def _mount_field(mount, key, value, field, readonly):
    if key in ("readonly", "readwrite"):
        flag = _parse_go_bool(value, key)
        return flag if key == "readonly" else not flag

    if key == "required":
        _require_secret_or_ssh(mount, key)
        mount["required"] = _parse_go_bool(value, key)
    elif key in ("source", "target", "from", "id", "size", "env"):
        mount[key] = value
    elif key == "sharing":
        if "$" not in value and value not in _SHARING_MODES:
            raise FlagError(f"unsupported sharing value {value!r}; use one of: {', '.join(_SHARING_MODES)}")
        mount[key] = value
    elif key in ("mode", "uid", "gid"):
        mount[key] = _mount_number(key, value)
    else:
        raise FlagError(f"unexpected key {key!r} in mount field {field!r}")
    return readonly


def _require_secret_or_ssh(mount, key):
    if mount["type"] not in ("secret", "ssh"):
        raise FlagError(f"unexpected key {key!r} for mount type {mount['type']!r}")


def _mount_number(key, value):
    if "$" in value:
        return value
    base = 8 if key == "mode" else 10
    try:
        return int(value, base)
    except ValueError:
        raise FlagError(f"invalid {key} {value!r} in mount") from None


def _parse_go_bool(value, key):
    if value in _TRUE_WORDS:
        return True
    if value in _FALSE_WORDS:
        return False
    raise FlagError(f"invalid boolean {value!r} for mount field {key!r}")


def _finish_mount(mount, readonly, spec):
    kind = mount["type"]

    # Cache and tmpfs mounts are writable unless asked otherwise; bind,
    # secret and ssh mounts are read-only.
    if readonly is None:
        readonly = kind not in ("cache", "tmpfs")
    mount["readonly"] = readonly

    if kind == "cache":
        mount.setdefault("sharing", "shared")
    if kind == "secret" and "target" not in mount and "env" not in mount and "id" in mount:
        mount["target"] = "/run/secrets/" + mount["id"]
    if kind in ("bind", "cache", "tmpfs") and not mount.get("target"):
        raise FlagError(f"mount {spec!r} has no target: add target=PATH")
    return mount


_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(text: str) -> int:
    """Parse a Go duration (`30s`, `1m30s`, `1.5h`, `0`) into nanoseconds. Raises FlagError."""
    body = text
    sign = 1
    if body[:1] in ("+", "-"):
        sign = -1 if body[0] == "-" else 1
        body = body[1:]

    if body == "0":
        return 0

    total = 0.0
    position = 0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if not match:
            raise FlagError(f"invalid duration {text!r}: use a number with a unit such as 30s, 5m or 1h30m")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()

    if not body:
        raise FlagError(f"invalid duration {text!r}: use a number with a unit such as 30s, 5m or 1h30m")
    return sign * round(total)
