"""Handlers for the commands on running containers: start, stop, kill, restart, wait, logs, exec, top.

Errors about one of several containers are printed as Docker's daemon
errors and make the command exit with 1 after the others were handled.
"""

from __future__ import annotations

import itertools
import logging
import os

from layerlab.engine.api import Engine
from layerlab.engine.errors import ConflictError, InvalidArgumentError, LayerlabError, NotFoundError

log = logging.getLogger(__name__)


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
    if options.tty:
        # TODO: allocate a pseudo-terminal, as `run -t` needs too.
        raise InvalidArgumentError("exec -t is not supported yet: run the command without -t")
    if options.detach:
        # TODO: hand the process to the container's monitor so it outlives the command.
        raise InvalidArgumentError("exec -d is not supported yet: run the command without -d")

    engine = Engine()
    stdin = None if options.interactive else os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with presenter.container_stdio() as (stdout, stderr):
            return engine.exec_in_container(options.container, options.cmd, env=options.env, user=options.user,
                                            workdir=options.workdir, stdio=(stdin, stdout, stderr))
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


HANDLERS = {
    "start": start,
    "stop": stop,
    "kill": kill,
    "restart": restart,
    "wait": wait,
    "logs": logs,
    "exec": exec_command,
    "top": top,
}
