"""`--change` for `commit` and `import`: Dockerfile instructions applied to an image's config.

Each change is parsed by the Dockerfile parser, so quoting, JSON and shell
forms and variable expansion (against the image's Env) work as in a
Dockerfile. Docker accepts the same keywords here as `docker commit` does.
"""

from __future__ import annotations

from layerlab.engine.dockerfile import instructions as ins
from layerlab.engine.dockerfile import parse
from layerlab.engine.errors import DockerfileError, InvalidArgumentError

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD", "STOPSIGNAL", "USER",
           "VOLUME", "WORKDIR")
DEFAULT_SHELL = ["/bin/sh", "-c"]


def parse_changes(changes: list[str]) -> list[ins.Instruction]:
    """Parse each `--change` text into one instruction; raise InvalidArgumentError naming the bad one."""
    parsed = []
    for change in changes:
        keyword = change.strip().split(None, 1)[0].upper() if change.strip() else ""
        if keyword not in ALLOWED:
            raise InvalidArgumentError(
                f"{keyword or change!r} is not a valid change command: use one of {', '.join(ALLOWED)}")
        try:
            dockerfile = parse(f"FROM scratch\n{change}\n", path="--change")
        except DockerfileError as error:
            raise InvalidArgumentError(f"invalid --change {change!r}: {error}") from None
        if len(dockerfile.instructions) != 2:
            raise InvalidArgumentError(f"invalid --change {change!r}: give exactly one instruction")
        parsed.append(dockerfile.instructions[1])
    return parsed


def apply_changes(settings: dict, changes: list[ins.Instruction]) -> None:
    """Apply parsed changes to an image config's `config` object in place, in order."""
    cmd_set = False
    for change in changes:
        env = dict(entry.partition("=")[::2] for entry in settings.get("Env") or [])
        change = change.expanded(env)
        if isinstance(change, ins.CmdInstruction):
            settings["Cmd"] = _command(settings, change)
            cmd_set = True
        elif isinstance(change, ins.EntrypointInstruction):
            settings["Entrypoint"] = _command(settings, change)
            # As in a Dockerfile, ENTRYPOINT clears the CMD unless a change before it set one.
            if not cmd_set:
                settings["Cmd"] = None
        elif isinstance(change, ins.EnvInstruction):
            merged = [entry for entry in settings.get("Env") or []]
            for pair in change.pairs:
                merged = [entry for entry in merged if entry.partition("=")[0] != pair.key]
                merged.append(f"{pair.key}={pair.value or ''}")
            settings["Env"] = merged
        elif isinstance(change, ins.LabelInstruction):
            labels = dict(settings.get("Labels") or {})
            labels.update((pair.key, pair.value or "") for pair in change.pairs)
            settings["Labels"] = labels
        elif isinstance(change, ins.ExposeInstruction):
            exposed = dict(settings.get("ExposedPorts") or {})
            for port in change.ports:
                exposed[(port if "/" in port else f"{port}/tcp").lower()] = {}
            settings["ExposedPorts"] = exposed
        elif isinstance(change, ins.VolumeInstruction):
            volumes = dict(settings.get("Volumes") or {})
            volumes.update((path, {}) for path in change.paths)
            settings["Volumes"] = volumes
        elif isinstance(change, ins.UserInstruction):
            settings["User"] = change.user
        elif isinstance(change, ins.WorkdirInstruction):
            current = settings.get("WorkingDir") or "/"
            settings["WorkingDir"] = change.path if change.path.startswith("/") else \
                current.rstrip("/") + "/" + change.path
        elif isinstance(change, ins.StopsignalInstruction):
            settings["StopSignal"] = change.signal
        elif isinstance(change, ins.OnbuildInstruction):
            settings["OnBuild"] = list(settings.get("OnBuild") or []) + [change.expression]
        elif isinstance(change, ins.HealthcheckInstruction):
            check = {"Test": list(change.test)}
            for name, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start_period", "StartPeriod"),
                              ("start_interval", "StartInterval"), ("retries", "Retries")):
                if getattr(change, name) is not None:
                    check[key] = getattr(change, name)
            settings["Healthcheck"] = check


def _command(settings: dict, instruction: ins.CommandInstruction) -> list[str]:
    if not instruction.shell_form:
        return list(instruction.command)
    shell = settings.get("Shell") or DEFAULT_SHELL
    return list(shell) + [" ".join(instruction.command)]
