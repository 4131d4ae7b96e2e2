"""Handlers for the sub-commands: each turns parsed flags into Engine calls and presents the result."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile

from layerlab.engine.api import Engine
from layerlab.engine.cli import container_commands, network_commands, transfer_commands, volume_commands
from layerlab.engine.errors import FlagValueError, InvalidArgumentError, LayerlabError, NotFoundError

log = logging.getLogger(__name__)


def _engine() -> Engine:
    return Engine()


def bootstrap(options, presenter) -> int:
    from layerlab.engine.bootstrap import bootstrap as make_base_image

    image_id, reference = make_base_image(_engine(), options.name, mirror=options.mirror, progress=presenter.write)
    presenter.write(f"{reference}: {image_id}\n")
    return 0


def build(options, presenter) -> int:
    dockerfile_text = None
    if options.context == "-" or options.file == "-":
        if options.context == "-" and options.file not in (None, "-"):
            # Docker 20.10 builds this, so layerlab rejects it with the status of an invalid flag.
            raise FlagValueError("`build -` reads the Dockerfile from standard input, so -f cannot name "
                                 f"another ({options.file}): drop -f, or pass a context folder")
        dockerfile_text = _read_stdin_dockerfile()
    if options.context != "-":
        return _build(options, presenter, options.context, dockerfile_text)
    # `build -` has no context, so COPY and ADD can only use URLs, stages and heredocs.
    with tempfile.TemporaryDirectory(prefix="layerlab-empty-context-") as empty:
        return _build(options, presenter, empty, dockerfile_text)


def _read_stdin_dockerfile() -> str:
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # TODO: Docker also accepts a tar archive of the context on standard input.
        raise InvalidArgumentError("standard input is not a UTF-8 Dockerfile: pass a Dockerfile there, or unpack "
                                   "a tar context into a folder and pass the folder") from None


def _build(options, presenter, context: str, dockerfile_text: str | None) -> int:
    from layerlab.engine.build import BuildRequest, Builder

    request = BuildRequest(
        context=context,
        dockerfile=None if dockerfile_text is not None else options.file,
        dockerfile_text=dockerfile_text,
        tags=options.tag,
        no_cache=options.no_cache,
        build_args=_parse_build_args(options.build_arg),
        target=options.target,
        network=options.network,
        secrets=_parse_secrets(options.secret),
        cache_from=options.cache_from,
    )
    from layerlab.engine.cli.build_progress import event_printer, failure_text
    from layerlab.engine.errors import BuildStepError

    on_event = None if options.quiet else event_printer(options.progress, presenter)
    try:
        result = Builder(_engine()).build(request, on_event=on_event)
    except BuildStepError as error:
        presenter.error(failure_text(error))
        return error.exit_code
    if options.quiet:
        presenter.write(result.image_id + "\n")
    elif hasattr(presenter, "build_finished"):
        presenter.build_finished(result)
    return 0


def run(options, presenter) -> int:
    from layerlab.engine import lifecycle

    engine = _engine()
    image, run_options = _image_and_run_options(engine, options, presenter)
    if options.tty and options.interactive and not options.detach and not os.isatty(0):
        presenter.error("the input device is not a TTY\n")
        return 1
    record = lifecycle.new_record(engine, image, run_options)
    if options.detach:
        return _run_detached(engine, record, options, presenter)
    try:
        with _container_stdin(options.interactive) as stdin, presenter.container_stdio() as (stdout, stderr):
            status = lifecycle.run_foreground(engine, record, stdout=stdout, stderr=stderr, stdin=stdin)
    except LayerlabError as error:
        if options.rm:
            _remove_with_volumes(engine, record)
        code = getattr(error, "exit_code", 125)
        presenter.error(f"layerlab: {error}\n")
        return code
    except KeyboardInterrupt:
        # Ctrl-C, SIGTERM or SIGHUP: run_foreground has killed the container and torn down its network.
        if options.rm:
            _remove_with_volumes(engine, record)
        raise
    if options.rm:
        _remove_with_volumes(engine, record)
    return status


def create(options, presenter) -> int:
    """Create a container in the Created state from `run`'s flags and print its ID; `start` runs it."""
    from layerlab.engine import lifecycle

    engine = _engine()
    try:
        flag_values = _run_flag_values(options)
    except FlagValueError:
        raise
    except LayerlabError as error:
        # Docker's CLI parses these flags itself and exits with 125 for an invalid one, where `create`
        # exits with 1 for the daemon's errors, such as a missing image (see `main.exit_status`).
        raise FlagValueError(str(error)) from None
    image, run_options = _image_and_run_options(engine, options, presenter, flag_values)
    record = lifecycle.new_record(engine, image, run_options)
    presenter.write(record.id + "\n")
    return 0


def _image_and_run_options(engine: Engine, options, presenter, flag_values: dict | None = None):
    """Return the image of `run` or `create`, pulled if the store lacks it, and the RunOptions of their flags.

    `flag_values` are those of `_run_flag_values`, computed here when not given.
    """
    from layerlab.engine import lifecycle

    if flag_values is None:
        flag_values = _run_flag_values(options)
    try:
        image = engine.images.resolve(options.image)
    except NotFoundError:
        # The registry client costs tens of milliseconds to import, so only
        # an image missing from the store pays for it.
        from layerlab.engine.registry.pull import image_or_pull

        image = image_or_pull(engine, options.image, progress=presenter.error)
    run_options = lifecycle.RunOptions(
        image=options.image,
        command=options.cmd,
        name=options.name,
        remove=options.rm,
        env=options.env,
        workdir=options.workdir,
        user=options.user,
        entrypoint=options.entrypoint,
        hostname=options.hostname,
        network=options.network,
        publish=options.publish,
        publish_all=options.publish_all,
        **flag_values,
    )
    return image, run_options


def _run_flag_values(options) -> dict:
    """Return the RunOptions fields of `run`'s mount, security, resource and stop flags."""
    from layerlab.engine import run_options, volumes

    mounts = [volumes.parse_volume_flag(text) for text in options.volume]
    mounts += [volumes.parse_mount_flag(text) for text in options.mount]
    mounts += [volumes.parse_tmpfs_flag(text) for text in options.tmpfs]
    stop_signal = ""
    if options.stop_signal:
        from layerlab.engine.control import parse_signal

        stop_signal = parse_signal(options.stop_signal).name
    return {
        "env_files": options.env_file,
        "labels": options.label,
        "mounts": mounts,
        "tty": options.tty,
        "interactive": options.interactive,
        "readonly_rootfs": options.read_only,
        "init": options.init,
        "cap_add": options.cap_add,
        "cap_drop": options.cap_drop,
        "privileged": options.privileged,
        "security_opt": options.security_opt,
        "memory": run_options.parse_memory(options.memory),
        "nano_cpus": run_options.parse_cpus(options.cpus),
        "pids_limit": max(options.pids_limit, 0),
        "ulimits": dict(run_options.parse_ulimit(text) for text in options.ulimit),
        "stop_signal": stop_signal,
        "stop_timeout": options.stop_timeout,
        "restart_policy": run_options.parse_restart_policy(options.restart),
    }


@contextlib.contextmanager
def _container_stdin(interactive: bool):
    # Without -i the container reads /dev/null, as in Docker; with it, our stdin.
    if interactive:
        yield None
        return
    fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def _remove_with_volumes(engine: Engine, record) -> None:
    from layerlab.engine.volumes import remove_anonymous

    engine.containers.remove(record)
    remove_anonymous(engine, record)


def _run_detached(engine: Engine, record, options, presenter) -> int:
    # Docker prints the full ID once the program runs, and keeps a container that failed to start (unless --rm).
    try:
        engine.run_detached(record, remove=options.rm)
    except LayerlabError as error:
        presenter.error(f"layerlab: {error}\n")
        return getattr(error, "exit_code", 125)
    presenter.write(record.id + "\n")
    return 0


def diff(options, presenter) -> int:
    from layerlab.engine import lifecycle

    engine = _engine()
    presenter.show(lifecycle.diff(engine.container(options.container)))
    return 0


def tag(options, presenter) -> int:
    from layerlab.engine.reference import Reference

    try:
        target = Reference.parse(options.target)
    except LayerlabError as error:
        # Docker's CLI parses the target itself and names it in this form.
        presenter.error(f'Error parsing reference: "{options.target}" is not a valid repository/tag: {error}\n')
        return 1
    # Docker's CLI rejects a digest target itself, so this message has no daemon prefix.
    if target.digest:
        presenter.error(f"refusing to create a tag with a digest reference: {options.target}\n")
        return 1
    try:
        _engine().tag(options.source, options.target)
    except LayerlabError as error:
        # Docker's daemon checks the names, so its CLI prints the error as the daemon's and exits with 1.
        presenter.error(f"Error response from daemon: {error}\n")
        return 1
    return 0


def rm(options, presenter) -> int:
    engine = _engine()
    status = 0
    for name in options.containers:
        try:
            presenter.write(engine.remove_container(name, force=options.force) + "\n")
        except NotFoundError as error:
            # Docker 20.10 reports a missing container under -f too, but exits with 0 for it.
            presenter.error(f"Error: {error}\n")
            if not options.force:
                status = 1
        except LayerlabError as error:
            presenter.error(f"Error response from daemon: {error}\n")
            status = 1
    return status


def rmi(options, presenter) -> int:
    engine = _engine()
    status = 0
    for name in options.images:
        try:
            for line in engine.remove_image(name, force=options.force):
                presenter.write(line + "\n")
        except LayerlabError as error:
            presenter.error(f"Error response from daemon: {error}\n")
            status = 1
    return status


def version(options, presenter) -> int:
    import layerlab

    presenter.write(f"layerlab version {layerlab.__version__}\n")
    return 0


def fsck(options, presenter) -> int:
    from layerlab.engine.maintenance import fsck as check_store
    from layerlab.engine.pruning import WAITING_MESSAGE

    problems = check_store(_engine(), repair=options.repair, on_wait=lambda: presenter.error(WAITING_MESSAGE),
                           on_note=lambda note: presenter.write(note + "\n"))
    for problem in problems:
        presenter.write(problem + "\n")
    if not problems:
        presenter.write("store is consistent\n")
    return 1 if problems and not options.repair else 0


def info(options, presenter) -> int:
    from layerlab.engine.maintenance import host_info

    for key, value in host_info(_engine()).items():
        presenter.write(f"{key}: {value}\n")
    return 0


def _parse_secrets(entries: list[str]) -> dict[str, str]:
    """Parse `--secret id=NAME,src=PATH` (`source=` also works) into {id: path}."""
    secrets = {}
    for entry in entries:
        fields = dict(part.partition("=")[::2] for part in entry.split(","))
        secret_id = fields.get("id")
        path = fields.get("src") or fields.get("source")
        if not secret_id or not path:
            raise InvalidArgumentError(f"invalid --secret {entry!r}: expected id=NAME,src=PATH")
        if not os.path.isfile(path):
            raise InvalidArgumentError(f"invalid --secret {entry!r}: file {path} not found")
        secrets[secret_id] = path
    return secrets


def _parse_build_args(entries: list[str]) -> dict[str, str | None]:
    import os

    args: dict[str, str | None] = {}
    for entry in entries:
        key, has_value, value = entry.partition("=")
        if not key:
            raise FlagValueError(f"invalid --build-arg {entry!r}: expected KEY=value or KEY")
        args[key] = value if has_value else os.environ.get(key)
    return args


HANDLERS = {
    "bootstrap": bootstrap,
    "build": build,
    "run": run,
    "create": create,
    "diff": diff,
    "tag": tag,
    "rm": rm,
    "rmi": rmi,
    "version": version,
    "fsck": fsck,
    "info": info,
}
HANDLERS.update(container_commands.HANDLERS)
HANDLERS.update(transfer_commands.HANDLERS)
HANDLERS.update(network_commands.HANDLERS)
HANDLERS.update(volume_commands.HANDLERS)
