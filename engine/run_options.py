"""The values of `run`'s flags that go beyond the process: environment files, labels,
security options, resource limits, ulimits and --init, parsed as Docker does,
and their translation into a runtime ContainerSpec.
"""

from __future__ import annotations

import logging
import os
import re
import resource

from layerlab.engine.errors import InvalidArgumentError

log = logging.getLogger(__name__)

# Static tini builds that can run in any image, libc or not. Debian's tini
# package installs tini-static, and docker.io installs it as docker-init.
INIT_CANDIDATES = ("/usr/bin/tini-static", "/usr/sbin/docker-init", "/usr/libexec/docker/docker-init")
# The path at which Docker mounts its init inside the container.
INIT_TARGET = "/sbin/docker-init"

# Docker rejects --memory below 6 MiB.
MIN_MEMORY = 6 * 1024 * 1024

_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}


def read_env_files(paths: list[str]) -> list[str]:
    """Return the KEY=value and KEY entries of --env-file files, in order, as Docker reads them.

    Blank lines and lines starting with # are skipped. A name may not
    contain whitespace; a value is kept as written, quotes included.
    """
    entries = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as file:
                lines = file.read().splitlines()
        except OSError as error:
            raise InvalidArgumentError(f"open {path}: {error.strerror.lower()}") from None
        for number, line in enumerate(lines, 1):
            text = line.lstrip()
            if not text or text.startswith("#"):
                continue
            name, has_value, value = text.partition("=")
            if not name:
                raise InvalidArgumentError(f"{path}:{number}: no variable name before '=' in {line!r}")
            if any(character.isspace() for character in name):
                raise InvalidArgumentError(f"variable '{name}' contains whitespaces ({path}:{number})")
            if has_value:
                entries.append(f"{name}={value}")
            elif name in os.environ:
                entries.append(f"{name}={os.environ[name]}")
    return entries


def parse_labels(entries: list[str]) -> dict[str, str]:
    """Parse `-l KEY=value` and `-l KEY` (an empty value) into a dict."""
    labels = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        if not key:
            raise InvalidArgumentError(f"invalid label {entry!r}: expected KEY=value")
        labels[key] = value
    return labels


def parse_size(text: str, flag: str) -> int:
    """Parse Docker's byte sizes: `512m`, `1g`, `1048576`, `64k` (binary units)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)b?\s*", text.lower())
    if not match:
        raise InvalidArgumentError(f"invalid argument {text!r} for \"{flag}\" flag: expected a size such as 512m or 1g")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


# Linux's HOST_NAME_MAX: sethostname(2) fails with EINVAL for a longer name.
MAX_HOSTNAME_LENGTH = 64


def parse_restart_policy(text: str) -> dict:
    """Parse `run --restart` into Docker's HostConfig.RestartPolicy, accepting only "no".

    The format checks and messages follow Docker 20.10's CLI and daemon. Other valid
    policies raise, because no layerlab process outlives a container to restart it.
    """
    parts = text.split(":")
    if len(parts) > 2:
        raise InvalidArgumentError(f"invalid restart policy format: {text!r}, expected no, always, "
                                   "unless-stopped or on-failure[:max-retries]")
    name = parts[0]
    count = 0
    if len(parts) == 2:
        try:
            count = int(parts[1])
        except ValueError:
            raise InvalidArgumentError(f"maximum retry count must be an integer: {parts[1]!r}") from None

    if name not in ("", "no", "always", "unless-stopped", "on-failure"):
        raise InvalidArgumentError(f"invalid restart policy '{name}'")
    if count and name != "on-failure":
        raise InvalidArgumentError(f"maximum retry count cannot be used with restart policy '{name}'")
    if count < 0:
        raise InvalidArgumentError("maximum retry count cannot be negative")
    if name in ("always", "unless-stopped", "on-failure"):
        raise InvalidArgumentError(
            f"restart policy '{text}' is not supported: layerlab has no daemon to restart containers. "
            "Use --restart no, and restart the container with `layerlab start` or a service manager such as systemd"
        )
    return {"Name": name, "MaximumRetryCount": 0}


def check_workdir_and_hostname(workdir: str, hostname: str) -> None:
    """Reject a relative -w and a -h longer than the kernel accepts, before anything is created."""
    if workdir and not workdir.startswith("/"):
        # Docker's daemon message, word for word.
        raise InvalidArgumentError(f"the working directory '{workdir}' is invalid, it needs to be an absolute path.")
    if len(hostname) > MAX_HOSTNAME_LENGTH:
        raise InvalidArgumentError(
            f"invalid hostname {hostname[:20]}... ({len(hostname)} characters): Linux allows at most "
            f"{MAX_HOSTNAME_LENGTH}; give a shorter -h"
        )


def parse_memory(text: str) -> int:
    if not text:
        return 0
    value = parse_size(text, "-m, --memory")
    if value < MIN_MEMORY:
        raise InvalidArgumentError("Minimum memory limit allowed is 6MB")
    return value


def parse_cpus(text: str) -> int:
    """Return --cpus as nano-CPUs, checked against the CPUs of this host."""
    if not text:
        return 0
    try:
        value = float(text)
    except ValueError:
        raise InvalidArgumentError(f"invalid argument {text!r} for \"--cpus\" flag: expected a number such as 1.5") from None
    available = os.cpu_count() or 1
    if value <= 0 or value > available:
        raise InvalidArgumentError(
            f"Range of CPUs is from 0.01 to {available}.00, as there are only {available} CPUs available"
        )
    return int(round(value * 1e9))


def parse_security_opts(entries: list[str]) -> dict:
    """Parse --security-opt values: no-new-privileges[:true|false] and seccomp=unconfined."""
    result = {"no_new_privileges": False, "seccomp": "default"}
    for entry in entries:
        key, separator, value = entry.partition("=") if "=" in entry else entry.partition(":")
        if key == "no-new-privileges":
            if value not in ("", "true", "false"):
                raise InvalidArgumentError(f"invalid --security-opt {entry!r}: no-new-privileges takes true or false")
            result["no_new_privileges"] = value != "false"
        elif key == "seccomp":
            if value != "unconfined":
                # TODO: read custom profile files (seccomp=PATH) in Docker's JSON format.
                raise InvalidArgumentError(f"invalid --security-opt {entry!r}: only seccomp=unconfined is supported; "
                                           "without it Docker's default profile applies")
            result["seccomp"] = "unconfined"
        elif key in ("label", "apparmor"):
            log.warning("--security-opt %s ignored: layerlab applies no SELinux or AppArmor profile", entry)
        else:
            raise InvalidArgumentError(f"Invalid --security-opt: {entry!r}")
    return result


def parse_ulimit(text: str) -> tuple[str, list[int]]:
    """Parse `--ulimit NAME=SOFT[:HARD]` and check it against our own hard limit."""
    name, _, values = text.partition("=")
    number = getattr(resource, f"RLIMIT_{name.upper()}", None)
    if number is None or not values:
        raise InvalidArgumentError(f"invalid ulimit argument: {text}: expected NAME=SOFT[:HARD], such as nofile=1024:2048")
    soft_text, _, hard_text = values.partition(":")
    try:
        soft = int(soft_text)
        hard = int(hard_text) if hard_text else soft
    except ValueError:
        raise InvalidArgumentError(f"invalid ulimit argument: {text}: limits must be integers") from None
    if soft > hard:
        raise InvalidArgumentError(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
    current_hard = resource.getrlimit(number)[1]
    if current_hard != resource.RLIM_INFINITY and hard > current_hard:
        # Raising a hard limit needs CAP_SYS_RESOURCE, which root lacks on some hosts.
        raise InvalidArgumentError(f"cannot set --ulimit {text}: the hard limit {hard} is above this process's "
                                   f"hard limit {current_hard}; ask for {current_hard} or less")
    return name.lower(), [soft, hard]


def init_binary() -> str:
    """Return the host path of a static tini for --init."""
    for path in INIT_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    raise InvalidArgumentError(
        f"--init needs a static tini, and none of {', '.join(INIT_CANDIDATES)} exists: "
        "install Debian's tini package (apt-get install tini), or run without --init"
    )


def host_config(options) -> dict:
    """Return the Docker HostConfig fields of a `run` (lifecycle.RunOptions), checked."""
    from layerlab.engine.runtime.capabilities import capability_set

    # Unknown capability names raise here, before the container exists.
    capability_set(options.cap_add, options.cap_drop, options.privileged)
    security = parse_security_opts(options.security_opt)
    config = {
        "Privileged": options.privileged,
        "ReadonlyRootfs": options.readonly_rootfs,
        "Init": options.init,
        "CapAdd": list(options.cap_add) or None,
        "CapDrop": list(options.cap_drop) or None,
        "SecurityOpt": list(options.security_opt) or None,
        "Memory": options.memory,
        "NanoCpus": options.nano_cpus,
        "PidsLimit": options.pids_limit or None,
        "Ulimits": [{"Name": name, "Soft": soft, "Hard": hard} for name, (soft, hard) in options.ulimits.items()]
        or None,
        "NoNewPrivileges": security["no_new_privileges"],
        "Seccomp": security["seccomp"],
        "AutoRemove": options.remove,
        "RestartPolicy": dict(options.restart_policy),
    }
    if options.init:
        config["InitPath"] = init_binary()
    if options.memory or options.nano_cpus or options.pids_limit:
        _check_cgroups_allowed(options)
    return config


def _check_cgroups_allowed(options) -> None:
    from layerlab.engine.runtime import Resources, cgroups

    # Raises the rootless error now, so no container record is left behind.
    resources = Resources(options.memory, options.nano_cpus, options.pids_limit)
    cgroups.check_allowed(resources)


def security_of(record):
    """Return the runtime's Security for the container: its capabilities, seccomp profile and no_new_privs."""
    from layerlab.engine.runtime.specs import Security

    config = record.host_config or {}
    return Security(
        cap_add=tuple(config.get("CapAdd") or ()),
        cap_drop=tuple(config.get("CapDrop") or ()),
        privileged=bool(config.get("Privileged")),
        no_new_privileges=bool(config.get("NoNewPrivileges")),
        # A record from before seccomp support has no Seccomp key and keeps running without a filter.
        seccomp=config.get("Seccomp", ""),
    )


def apply_host_config(spec, record) -> None:
    """Set the ContainerSpec fields that the record's HostConfig and mounts ask for."""
    from layerlab.engine import volumes
    from layerlab.engine.runtime import Mount, Resources

    config = record.host_config or {}
    spec.mounts = volumes.runtime_mounts(record.mounts)
    spec.readonly_rootfs = bool(config.get("ReadonlyRootfs"))
    security = security_of(record)
    spec.privileged = security.privileged
    spec.cap_add = security.cap_add
    spec.cap_drop = security.cap_drop
    spec.no_new_privileges = security.no_new_privileges
    spec.seccomp = security.seccomp
    spec.resources = Resources(config.get("Memory") or 0, config.get("NanoCpus") or 0, config.get("PidsLimit") or 0)
    spec.ulimits = {item["Name"]: (item["Soft"], item["Hard"]) for item in config.get("Ulimits") or ()}
    if config.get("Init"):
        spec.mounts.append(Mount("bind", INIT_TARGET, config["InitPath"], readonly=True))
        spec.process.args = [INIT_TARGET, "--", *spec.process.args]
