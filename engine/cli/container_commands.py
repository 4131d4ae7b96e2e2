"""Handlers for the commands on containers (start, stop, kill, restart, wait, logs, exec, top, cp, export,
rename, pause, unpause, stats, prune), for `import`, `image prune`, `builder prune` and `system prune`/`df`,
and for the listing commands with `--filter` and `--format` (ps, images, history, inspect).

Errors about one of several containers are printed as Docker's daemon
errors and make the command exit with 1 after the others were handled.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys

from layerlab.engine.api import Engine
from layerlab.engine.errors import ConflictError, InvalidArgumentError, LayerlabError, NotFoundError

log = logging.getLogger(__name__)


def attach(options, presenter) -> int:
    """Print a running container's output from now on until it exits; return its exit code, as `docker attach`."""
    from layerlab.engine import control

    engine = Engine()
    record = engine.container(options.container)
    if not control.is_running(engine, record):
        # The docker CLI checks this itself, so the message has no daemon prefix and the status is 1.
        presenter.error("You cannot attach to a stopped container, start it first\n")
        return 1

    # Output logged before the attach is not shown, as in Docker.
    earlier = len(engine.container_logs(record.id))
    entries = itertools.islice(engine.container_logs(record.id, follow=True), earlier, None)
    _print_logs(presenter, entries, timestamps=False)
    return engine.wait_container(record.id)


def start(options, presenter) -> int:
    engine = Engine()
    if options.attach and len(options.containers) > 1:
        raise InvalidArgumentError("you cannot start and attach multiple containers at once")

    failed = []
    for name in options.containers:
        try:
            # Lines logged by earlier runs are not this run's output.
            earlier = len(engine.container_logs(name)) if options.attach else 0
            engine.start_container(name)
        except LayerlabError as error:
            presenter.error(f"Error response from daemon: {error}\n")
            failed.append(name)
            continue
        if options.attach:
            entries = itertools.islice(engine.container_logs(name, follow=True), earlier, None)
            _print_logs(presenter, entries, timestamps=False)
            return engine.wait_container(name)
        presenter.write(name + "\n")

    if failed:
        presenter.error(f"Error: failed to start containers: {', '.join(failed)}\n")
        return 1
    return 0


def stop(options, presenter) -> int:
    engine = Engine()
    return _each(options.containers, presenter, lambda name: engine.stop_container(name, timeout=options.time))


def kill(options, presenter) -> int:
    engine = Engine()
    return _each(options.containers, presenter, lambda name: engine.kill_container(name, options.signal))


def restart(options, presenter) -> int:
    engine = Engine()
    return _each(options.containers, presenter, lambda name: engine.restart_container(name, timeout=options.time))


def wait(options, presenter) -> int:
    engine = Engine()
    status = 0
    for name in options.containers:
        try:
            presenter.write(f"{engine.wait_container(name)}\n")
        except NotFoundError as error:
            presenter.error(f"Error response from daemon: {error}\n")
            status = 1
    return status


def logs(options, presenter) -> int:
    from layerlab.engine.logs import parse_tail

    entries = Engine().container_logs(options.container, follow=options.follow, tail=parse_tail(options.tail))
    _print_logs(presenter, entries, timestamps=options.timestamps)
    return 0


def exec_command(options, presenter) -> int:
    if options.tty and options.interactive and not options.detach and not os.isatty(0):
        presenter.error("the input device is not a TTY\n")
        return 1

    engine = Engine()
    if options.detach:
        try:
            return engine.exec_in_container(options.container, options.cmd, env=options.env, user=options.user,
                                            workdir=options.workdir, privileged=options.privileged,
                                            tty=options.tty, detach=True)
        except ConflictError as error:
            presenter.error(f"Error response from daemon: {error}\n")
            return 1

    stdin = None if options.interactive else os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with presenter.container_stdio() as (stdout, stderr):
            return engine.exec_in_container(options.container, options.cmd, env=options.env, user=options.user,
                                            workdir=options.workdir, privileged=options.privileged,
                                            stdio=(stdin, stdout, stderr), tty=options.tty,
                                            interactive=options.interactive)
    except ConflictError as error:
        presenter.error(f"Error response from daemon: {error}\n")
        return 1
    finally:
        if stdin is not None:
            os.close(stdin)


def top(options, presenter) -> int:
    try:
        presenter.show(Engine().top(options.container))
    except ConflictError as error:
        presenter.error(f"Error response from daemon: {error}\n")
        return 1
    return 0


def _each(names, presenter, action) -> int:
    status = 0
    for name in names:
        try:
            action(name)
        except LayerlabError as error:
            presenter.error(f"Error response from daemon: {error}\n")
            status = 1
            continue
        presenter.write(name + "\n")
    return status


def _print_logs(presenter, entries, *, timestamps: bool) -> None:
    for entry in entries:
        text = entry.with_timestamp() if timestamps else entry.text
        if entry.stream == "stderr":
            presenter.error(text)
        else:
            presenter.write(text)


def cp(options, presenter) -> int:
    from layerlab.engine import copying

    source_container, source = copying.split_copy_argument(options.source)
    dest_container, dest = copying.split_copy_argument(options.dest)
    if (source_container is None) == (dest_container is None):
        raise InvalidArgumentError("copying between containers or between two local paths is not supported: "
                                   "give exactly one CONTAINER:PATH argument")
    engine = Engine()
    if source_container is not None:
        output_fd = None
        if dest == "-":
            presenter.stdout.flush()
            output_fd = _binary_output(presenter)
        copying.copy_from_container(engine, engine.container(source_container), source, dest,
                                    archive=options.archive, follow_link=options.follow_link, output_fd=output_fd)
        return 0
    input_file = sys.stdin.buffer if source == "-" else None
    copying.copy_to_container(engine, engine.container(dest_container), source, dest, archive=options.archive,
                              input_file=input_file)
    return 0


def export(options, presenter) -> int:
    from layerlab.engine.export import export_container

    engine = Engine()
    record = engine.container(options.container)
    if options.output:
        with open(options.output, "wb") as output:
            export_container(engine, record, output.fileno())
        return 0
    fd = _binary_output(presenter)
    if os.isatty(fd):
        raise InvalidArgumentError("cowardly refusing to save to a terminal: use the -o flag or redirect")
    presenter.stdout.flush()
    export_container(engine, record, fd)
    return 0


def import_image(options, presenter) -> int:
    from layerlab.engine.export import import_image as store_tar

    if "://" in options.file:
        raise InvalidArgumentError(f"importing from a URL ({options.file}) is not supported: download it and "
                                   "import the file")
    engine = Engine()
    if options.file == "-":
        image = store_tar(engine, sys.stdin.buffer, options.repository, changes=options.change,
                          message=options.message)
    else:
        try:
            source = open(options.file, "rb")
        except FileNotFoundError:
            raise NotFoundError(f"file {options.file} not found: give a tar file, or - for standard input") from None
        with source:
            image = store_tar(engine, source, options.repository, changes=options.change, message=options.message)
    presenter.write(image.id + "\n")
    return 0


def rename(options, presenter) -> int:
    from layerlab.engine.container_admin import rename as rename_container

    engine = Engine()
    rename_container(engine, engine.container(options.container), options.new_name)
    return 0


def pause(options, presenter) -> int:
    from layerlab.engine.container_admin import pause as pause_container

    engine = Engine()
    return _each(options.containers, presenter, lambda name: pause_container(engine, engine.container(name)))


def unpause(options, presenter) -> int:
    from layerlab.engine.container_admin import unpause as unpause_container

    engine = Engine()
    return _each(options.containers, presenter, lambda name: unpause_container(engine, engine.container(name)))


def stats(options, presenter) -> int:
    import time

    from layerlab.engine import formatting
    from layerlab.engine.stats import STATS_HEADERS, STATS_TABLE, stats_rows

    engine = Engine()
    template = options.format or STATS_TABLE
    while True:
        if options.containers:
            records = [engine.container(name) for name in options.containers]
        else:
            records = engine.containers.list()
        for record in records:
            engine._refresh_state(record)
        if not options.all and not options.containers:
            records = [record for record in records if record.state.status == "running"]
        text = formatting.format_rows(template, stats_rows(records, no_trunc=options.no_trunc), STATS_HEADERS)
        if options.no_stream:
            presenter.write(text)
            return 0
        # Clear the screen and redraw, as Docker's live view does.
        presenter.write("\033[2J\033[H" + text)
        time.sleep(1)


def ps(options, presenter) -> int:
    from layerlab.engine import formatting, listing
    from layerlab.engine.filters import CONTAINER_FILTERS, parse_filters
    from layerlab.engine.image import parse_rfc3339
    from layerlab.engine.views import ContainerRow, ContainersView

    engine = Engine()
    filters = parse_filters(options.filter, CONTAINER_FILTERS)
    last = 1 if options.latest else options.last
    records = listing.select_containers(engine, all=options.all, filters=filters, last=last)
    rows = [listing.container_row(engine, record, no_trunc=options.no_trunc, size=options.size)
            for record in records]

    template = options.format
    if options.quiet:
        template = "{{.ID}}"
    elif template is None and options.size:
        template = listing.PS_TABLE + "\t{{.Size}}"
    if template is not None:
        headers = dict(listing.PS_HEADERS)
        presenter.write(formatting.format_rows(template, rows, headers))
        return 0

    view_rows = [
        ContainerRow(record.id, row["Image"], record.command, parse_rfc3339(record.created), row["Status"],
                     row["Ports"], row["Names"])
        for record, row in zip(records, rows)
    ]
    presenter.show(ContainersView(view_rows, no_trunc=options.no_trunc))
    return 0


def images(options, presenter) -> int:
    from layerlab.engine import formatting, listing
    from layerlab.engine.filters import IMAGE_FILTERS, parse_filters
    from layerlab.engine.views import ImageRow, ImagesView

    engine = Engine()
    filters = parse_filters(options.filter, IMAGE_FILTERS)
    rows = listing.image_rows(engine, filters=filters, all=options.all, no_trunc=options.no_trunc,
                              repository=options.repository)
    if options.format and not options.quiet:
        presenter.write(formatting.format_rows(options.format, rows, listing.IMAGES_HEADERS))
        return 0
    view_rows = [ImageRow(row["Repository"], row["Tag"], row["FullID"], row["Created"], row["SizeBytes"],
                          row["Digest"])
                 for row in rows]
    presenter.show(ImagesView(view_rows, quiet=options.quiet, no_trunc=options.no_trunc, digests=options.digests))
    return 0


def history(options, presenter) -> int:
    from layerlab.engine import formatting, listing

    view = Engine().history(options.image, quiet=options.quiet, no_trunc=options.no_trunc,
                            human=options.human == "true")
    if options.format and not options.quiet:
        presenter.write(formatting.format_rows(options.format, listing.history_rows(view), listing.HISTORY_HEADERS))
        return 0
    presenter.show(view)
    return 0


def _inspect_one(engine: Engine, name: str, kind: str | None) -> dict:
    """Inspect a container, else an image, named `name`, as `docker inspect` looks them up."""
    if kind != "image":
        try:
            return engine.inspect_container(name)
        except NotFoundError:
            if kind == "container":
                raise
    try:
        return engine.inspect_image(name)
    except NotFoundError:
        raise NotFoundError(f"No such object: {name}") from None


def inspect(options, presenter) -> int:
    from layerlab.engine import formatting

    engine = Engine()
    kind = options.type or getattr(options, "type_default", None)
    documents = []
    status = 0
    for name in options.names:
        try:
            document = _inspect_one(engine, name, kind)
        except NotFoundError as error:
            presenter.error(f"Error: {error}\n")
            status = 1
            continue
        if "State" in document:
            _add_container_details(engine, document)
        documents.append(document)

    if options.format:
        # The docker CLI prints both kinds of template error with this prefix and no other.
        try:
            template = formatting.Template(formatting.unescape(options.format))
        except formatting.TemplateParseError as error:
            presenter.error(f"template parsing error: {error}\n")
            return error.exit_code
        for document in documents:
            try:
                presenter.write(template.render(document) + "\n")
            except formatting.TemplateError as error:
                presenter.error(f"template parsing error: {error}\n")
                return 1
    else:
        presenter.write(json.dumps(documents, indent=4) + "\n")
    return status


def _add_container_details(engine, document: dict) -> None:
    # Fields of Docker's container document that the engine's record keeps elsewhere.
    from layerlab.engine import listing

    record = engine.container(document["Id"])
    document["State"]["Paused"] = record.state.paused and record.state.status == "running"
    if document["State"]["Paused"]:
        document["State"]["Status"] = "paused"
    document["Config"].setdefault("Labels", listing.container_labels(engine, record))
    document["Config"].setdefault("Cmd", list(record.args))


def commit(options, presenter) -> int:
    import copy

    from layerlab.engine import container_admin, lifecycle
    from layerlab.engine.config_changes import apply_changes, parse_changes

    engine = Engine()
    record = engine.container(options.container)
    changes = []
    if options.change:
        settings = copy.deepcopy(engine.image(record.image_id).settings)
        apply_changes(settings, parse_changes(options.change))
        changes = [settings]

    # Docker pauses a running container while it commits, so its files do not change half-way.
    pause_during_commit = options.pause and record.state.status == "running" and not record.state.paused
    if pause_during_commit:
        container_admin.pause(engine, record)
    try:
        image = lifecycle.commit(engine, record, options.repository, message=options.message,
                                 author=options.author, changes=changes)
    finally:
        if pause_during_commit:
            container_admin.unpause(engine, record)
    presenter.write(image.id + "\n")
    return 0


_PRUNE_WARNINGS = {
    "container": "WARNING! This will remove all stopped containers.\n",
    "image": "WARNING! This will remove all dangling images.\n",
    "image_all": "WARNING! This will remove all images without at least one container associated to them.\n",
    "builder": "WARNING! This will remove all dangling build cache.\n",
    "network": "WARNING! This will remove all custom networks not used by at least one container.\n",
    "system": ("WARNING! This will remove:\n  - all stopped containers\n"
               "  - all networks not used by at least one container\n  - all dangling images\n"
               "  - all build cache\n\n"),
    "system_all": ("WARNING! This will remove:\n  - all stopped containers\n"
                   "  - all networks not used by at least one container\n"
                   "  - all images without at least one container associated to them\n  - all build cache\n\n"),
}


def confirmed(options, presenter, warning: str) -> bool:
    """Ask as Docker does unless -f was given; anything but y or Y (an empty stdin too) declines."""
    if options.force:
        return True
    presenter.write(_PRUNE_WARNINGS[warning] + "Are you sure you want to continue? [y/N] ")
    answer = sys.stdin.readline() if sys.stdin is not None else ""
    if answer.strip().lower() not in ("y", "yes"):
        presenter.write("\n")
        return False
    return True


def container_prune(options, presenter) -> int:
    from layerlab.engine import pruning

    if confirmed(options, presenter, "container"):
        presenter.write(pruning.container_prune(Engine()).text())
    return 0


def image_prune(options, presenter) -> int:
    from layerlab.engine import pruning

    if confirmed(options, presenter, "image_all" if options.all else "image"):
        presenter.write(pruning.image_prune(Engine(), all_images=options.all, on_wait=_waiting(presenter)).text())
    return 0


def builder_prune(options, presenter) -> int:
    from layerlab.engine import pruning

    if confirmed(options, presenter, "builder"):
        presenter.write(pruning.builder_prune(Engine(), on_wait=_waiting(presenter)).text())
    return 0


def system_prune(options, presenter) -> int:
    from layerlab.engine import pruning

    if confirmed(options, presenter, "system_all" if options.all else "system"):
        presenter.write(pruning.system_prune(Engine(), all_images=options.all, on_wait=_waiting(presenter)).text())
    return 0


def _waiting(presenter):
    """Return a prune's on_wait callback, which prints why the prune has not finished yet."""
    from layerlab.engine import pruning

    return lambda: presenter.error(pruning.WAITING_MESSAGE)


def system_df(options, presenter) -> int:
    from layerlab.engine import pruning

    presenter.write(pruning.disk_usage(Engine()))
    return 0


def _binary_output(presenter) -> int:
    """Return the file descriptor behind the presenter's stdout, for tar streams."""
    try:
        return presenter.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        raise InvalidArgumentError("this output cannot take a tar stream: write it to a file with -o "
                                   "or a host path") from None


HANDLERS = {
    "attach": attach,
    "start": start,
    "stop": stop,
    "kill": kill,
    "restart": restart,
    "wait": wait,
    "logs": logs,
    "exec": exec_command,
    "top": top,
    "cp": cp,
    "export": export,
    "import": import_image,
    "rename": rename,
    "pause": pause,
    "unpause": unpause,
    "stats": stats,
    "ps": ps,
    "images": images,
    "history": history,
    "inspect": inspect,
    "commit": commit,
    "container_prune": container_prune,
    "image_prune": image_prune,
    "builder_prune": builder_prune,
    "system_prune": system_prune,
    "system_df": system_df,
}
