"""One handler per Dockerfile keyword: what a step records and how it runs.

Every handler returns a `Step`: the history text Docker's classic builder
records for it (which is also the build cache's key, with the parent image
and the sources' content hash), and a function that produces the new image
when the cache has none.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from layerlab.engine.build import copy_steps, layers
from layerlab.engine.build.state import StageState
from layerlab.engine.dockerfile import instructions as ins
from layerlab.engine.errors import DockerfileError
from layerlab.engine.image import Image, ImageDraft

log = logging.getLogger(__name__)

NOP = "/bin/sh -c #(nop) "
DEFAULT_SHELL = ["/bin/sh", "-c"]
# `RUN <<EOF` alone runs the body as the script; `<<-EOF` and quoted delimiters count too.
_HEREDOC_ONLY = re.compile(r"<<-?(['\"]?)[A-Za-z0-9_.-]+\1")
PREDEFINED_ARGS = {
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
}


@dataclass
class Step:
    """A step ready to run: its history line, its cache key material and how to make its image."""

    created_by: str
    execute: Callable[[], Image]
    cache_extra: str = ""
    cleanup: Callable[[], None] | None = None
    # What the cache-miss reason compares with the previous build of this step.
    record: dict = field(default_factory=dict)
    # The step's config change, for steps that change the config: --cache-from rebuilds a hit with it.
    change: Callable[[ImageDraft], None] | None = None


def go_quoted_list(values: list[str]) -> str:
    """Format a list as Go's `%q` does for a []string: `["a" "b"]`."""
    return "[" + " ".join(json.dumps(value) for value in values) + "]"


def plan_step(run, state: StageState, instruction) -> Step:
    """Return the Step for `instruction` in `state`; `run` is the builder's per-step runner."""
    handler = HANDLERS.get(type(instruction))
    if handler is None:
        raise DockerfileError(
            f"{instruction.keyword} is not supported by this builder yet",
            path=run.dockerfile_path, line=instruction.line, instruction=instruction.keyword,
        )
    return handler(run, state, instruction)


def _metadata(run, state: StageState, created_by: str, change: Callable[[ImageDraft], None]) -> Step:
    def execute() -> Image:
        draft = state.draft()
        change(draft)
        draft.add_history(created_by, empty_layer=True)
        return run.write(draft)

    return Step(created_by, execute, change=change)


def _env(run, state, instruction: ins.EnvInstruction) -> Step:
    pairs = [(pair.key, pair.value or "") for pair in instruction.pairs]

    def change(draft: ImageDraft) -> None:
        env = [entry for entry in draft.settings.get("Env") or []]
        for key, value in pairs:
            env = [entry for entry in env if entry.partition("=")[0] != key]
            env.append(f"{key}={value}")
        draft.settings["Env"] = env

    text = " ".join(f"{key}={value}" for key, value in pairs)
    return _metadata(run, state, f"{NOP} ENV {text}", change)


def _label(run, state, instruction: ins.LabelInstruction) -> Step:
    pairs = [(pair.key, pair.value or "") for pair in instruction.pairs]

    def change(draft: ImageDraft) -> None:
        labels = dict(draft.settings.get("Labels") or {})
        labels.update(pairs)
        draft.settings["Labels"] = labels

    text = " ".join(f"{key}={value}" for key, value in pairs)
    return _metadata(run, state, f"{NOP} LABEL {text}", change)


def _maintainer(run, state, instruction: ins.MaintainerInstruction) -> Step:
    def change(draft: ImageDraft) -> None:
        draft.config["author"] = instruction.maintainer

    return _metadata(run, state, f"{NOP} MAINTAINER {instruction.maintainer}", change)


def _shell_command(state: StageState, instruction: ins.CommandInstruction) -> list[str]:
    if not instruction.shell_form:
        return list(instruction.command)
    shell = state.settings().get("Shell") or DEFAULT_SHELL
    return list(shell) + [" ".join(instruction.command)]


def _cmd(run, state, instruction: ins.CmdInstruction) -> Step:
    command = _shell_command(state, instruction)

    def change(draft: ImageDraft) -> None:
        draft.settings["Cmd"] = command

    return _metadata(run, state, f"{NOP} CMD {go_quoted_list(command)}", change)


def _entrypoint(run, state, instruction: ins.EntrypointInstruction) -> Step:
    command = _shell_command(state, instruction)

    def change(draft: ImageDraft) -> None:
        draft.settings["Entrypoint"] = command
        # An ENTRYPOINT resets a CMD inherited from the base image, as the Dockerfile reference says.
        if not run.stage_set_cmd:
            draft.settings["Cmd"] = None

    return _metadata(run, state, f"{NOP} ENTRYPOINT {go_quoted_list(command)}", change)


def _expose(run, state, instruction: ins.ExposeInstruction) -> Step:
    ports = [port if "/" in port else f"{port}/tcp" for port in instruction.ports]

    def change(draft: ImageDraft) -> None:
        exposed = dict(draft.settings.get("ExposedPorts") or {})
        for port in ports:
            exposed[port.lower()] = {}
        draft.settings["ExposedPorts"] = exposed

    return _metadata(run, state, f"{NOP} EXPOSE {' '.join(instruction.ports)}", change)


def _user(run, state, instruction: ins.UserInstruction) -> Step:
    def change(draft: ImageDraft) -> None:
        draft.settings["User"] = instruction.user

    return _metadata(run, state, f"{NOP} USER {instruction.user}", change)


def _volume(run, state, instruction: ins.VolumeInstruction) -> Step:
    def change(draft: ImageDraft) -> None:
        volumes = dict(draft.settings.get("Volumes") or {})
        for path in instruction.paths:
            volumes[path] = {}
        draft.settings["Volumes"] = volumes

    return _metadata(run, state, f"{NOP} VOLUME {go_quoted_list(instruction.paths)}", change)


def _stopsignal(run, state, instruction: ins.StopsignalInstruction) -> Step:
    from layerlab.engine.control import parse_signal
    from layerlab.engine.errors import InvalidArgumentError

    # Checked here, after variable expansion, so that `stop` never meets a signal it cannot send.
    try:
        parse_signal(instruction.signal)
    except InvalidArgumentError as error:
        raise DockerfileError(f"STOPSIGNAL: {error}") from None

    def change(draft: ImageDraft) -> None:
        draft.settings["StopSignal"] = instruction.signal

    return _metadata(run, state, f"{NOP} STOPSIGNAL {instruction.signal}", change)


def _shell(run, state, instruction: ins.ShellInstruction) -> Step:
    def change(draft: ImageDraft) -> None:
        draft.settings["Shell"] = list(instruction.shell)

    return _metadata(run, state, f"{NOP} SHELL {go_quoted_list(instruction.shell)}", change)


def _healthcheck(run, state, instruction: ins.HealthcheckInstruction) -> Step:
    check = {"Test": list(instruction.test)}
    for field_name, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start_period", "StartPeriod"),
                            ("start_interval", "StartInterval"), ("retries", "Retries")):
        value = getattr(instruction, field_name)
        if value is not None:
            check[key] = value

    def change(draft: ImageDraft) -> None:
        draft.settings["Healthcheck"] = check

    return _metadata(run, state, f"{NOP} HEALTHCHECK {json.dumps(check, separators=(',', ':'))}", change)


def _onbuild(run, state, instruction: ins.OnbuildInstruction) -> Step:
    def change(draft: ImageDraft) -> None:
        draft.settings["OnBuild"] = list(draft.settings.get("OnBuild") or []) + [instruction.expression]

    return _metadata(run, state, f"{NOP} ONBUILD {instruction.expression}", change)


def _arg(run, state, instruction: ins.ArgInstruction) -> Step:
    texts = []
    for pair in instruction.pairs:
        # `ARG NAME` inside a stage takes the value of a global ARG of that name.
        default = pair.value if pair.value is not None else run.meta_args.get(pair.key)
        value = run.arg_value(pair.key, default)
        if value is not None:
            state.args[pair.key] = value
        texts.append(pair.key if pair.value is None else f"{pair.key}={pair.value}")

    return _metadata(run, state, f"{NOP} ARG {' '.join(texts)}", lambda draft: None)


def _workdir(run, state, instruction: ins.WorkdirInstruction) -> Step:
    current = state.settings().get("WorkingDir") or "/"
    path = posixpath.normpath(posixpath.join(current, instruction.path))

    def execute() -> Image:
        return layers.workdir_step(run, state, path, f"{NOP}WORKDIR {path}")

    def change(draft: ImageDraft) -> None:
        draft.settings["WorkingDir"] = path

    return Step(f"{NOP}WORKDIR {path}", execute, change=change)


def _run(run, state, instruction: ins.RunInstruction) -> Step:
    command = _run_command(state, instruction)
    used_args = sorted(
        (key, value) for key, value in state.args.items() if key not in state.config_env
    )
    prefix = ""
    if used_args:
        prefix = f"|{len(used_args)} " + " ".join(f"{key}={value}" for key, value in used_args) + " "
    created_by = prefix + " ".join(command)
    # Proxy variables reach the command without a declaration and stay out of history and the cache key.
    env_args = {key: value for key, value in run.request.build_args.items()
                if key in PREDEFINED_ARGS and value is not None and key not in state.args}
    env_args.update(used_args)
    where = {"path": run.dockerfile_path, "line": instruction.line, "instruction": "RUN"}
    if instruction.network not in (None, "default", "none", "host"):
        raise DockerfileError(f"RUN --network={instruction.network} is not supported: use none, host or default",
                              **where)
    network = None if instruction.network in (None, "default") else instruction.network
    options = " ".join(instruction.mount_specs + ([f"network={network}"] if network else []))

    def execute() -> Image:
        return layers.run_step(run, state, command, env_args, created_by, mounts=instruction.mounts,
                               network=network, where=where)

    record = {"args": dict(used_args)}
    return Step(created_by, execute, cache_extra=options, record=record)


def _run_command(state: StageState, instruction: ins.RunInstruction) -> list[str]:
    """Return RUN's argv; a heredoc body goes to the shell, which parses `<<EOF` itself."""
    if not instruction.heredocs or not instruction.shell_form:
        return _shell_command(state, instruction)
    shell = list(state.settings().get("Shell") or DEFAULT_SHELL)
    text = " ".join(instruction.command)
    if len(instruction.heredocs) == 1 and _HEREDOC_ONLY.fullmatch(text.strip()):
        return shell + [instruction.heredocs[0].data]
    for heredoc in instruction.heredocs:
        text += "\n" + heredoc.content + heredoc.name
    return shell + [text]


def _copy(run, state, instruction: ins.CopyInstruction) -> Step:
    prepared = copy_steps.prepare_copy(run, state, instruction)

    def execute() -> Image:
        return copy_steps.copy_step(run, state, prepared)

    record = {"files": prepared.files, "from": instruction.from_stage or ""}
    return Step(prepared.created_by, execute, cache_extra=prepared.content_hash, cleanup=prepared.close,
                record=record)


HANDLERS = {
    ins.EnvInstruction: _env,
    ins.LabelInstruction: _label,
    ins.MaintainerInstruction: _maintainer,
    ins.CmdInstruction: _cmd,
    ins.EntrypointInstruction: _entrypoint,
    ins.ExposeInstruction: _expose,
    ins.UserInstruction: _user,
    ins.VolumeInstruction: _volume,
    ins.StopsignalInstruction: _stopsignal,
    ins.ShellInstruction: _shell,
    ins.HealthcheckInstruction: _healthcheck,
    ins.OnbuildInstruction: _onbuild,
    ins.ArgInstruction: _arg,
    ins.WorkdirInstruction: _workdir,
    ins.RunInstruction: _run,
    ins.CopyInstruction: _copy,
    ins.AddInstruction: _copy,
}
