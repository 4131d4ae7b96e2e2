"""The `layerlab` command line: docker's sub-commands and flags over the Engine API.

Each sub-command is a parser built by a function in `parsers` and a
handler in `commands`; `main` joins them through one table. Handlers never
print: they hand their output to a presenter, which is the terminal here
and the notebook in the kernel.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import signal
import sys
import threading

from layerlab.engine.cli import parsers
from layerlab.engine.cli.presenter import TerminalPresenter
from layerlab.engine.errors import FlagValueError, LayerlabError

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None, presenter=None) -> int:
    """Run one `layerlab` command line; return its exit status."""
    presenter = presenter or TerminalPresenter()
    argv = list(sys.argv[1:] if argv is None else argv)
    word = _command_word(argv)
    parser = parsers.build_parser(word)
    if word is not None and word not in parsers.command_names(parser):
        presenter.error(_unknown_command_message(parser, word))
        return 1

    try:
        options = parser.parse_args(argv)
    except parsers.UsageError as error:
        presenter.error(f"layerlab: {error}\nSee '{error.prog} --help'.\n\n{error.usage}")
        return error.exit_status
    except SystemExit as exit_request:
        # argparse exits after --help; the kernel must not lose its process to it.
        return int(exit_request.code or 0)

    _configure_logging(options.debug, options.log_level)
    unsupported = parsers.daemon_flag_given(options)
    if unsupported:
        presenter.error(f"layerlab: {unsupported} is not supported: layerlab runs without a daemon, so drop it\n"
                        f"See 'layerlab --help'.\n")
        return FLAG_VALUE_STATUS
    if options.version:
        # As with docker, --version wins over any command after it.
        options.handler = "version"
    elif options.command is None:
        presenter.write(parser.format_help())
        return 0

    from layerlab.engine.cli import commands

    handler = commands.HANDLERS[options.handler]
    # Only the command-line program owns its process's signals; the kernel passes a presenter of its own.
    catch_stop_signals = options.handler in STOP_SIGNAL_COMMANDS and isinstance(presenter, TerminalPresenter)
    try:
        with _stop_signals_as_interrupts(catch_stop_signals), _client_config(options.config):
            return handler(options, presenter) or 0
    except LayerlabError as error:
        presenter.error(f"layerlab: {error}\n")
        return exit_status(options.handler, error)
    except StopSignal as stop:
        presenter.error(f"layerlab: stopped by {signal.Signals(stop.number).name}\n")
        return 128 + stop.number
    except KeyboardInterrupt:
        presenter.error("layerlab: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader left, as `head` does: end quietly with the status of a
        # process killed by SIGPIPE, which is how Docker's CLI ends there.
        return BROKEN_PIPE_STATUS
    except OSError as error:
        log.debug("command failed", exc_info=True)
        presenter.error(f"layerlab: {error}\n")
        return 125


# Docker's CLI exits with 125 when `run` fails before the container's command
# starts, and with 1 when any other command gets an error from the daemon.
ENGINE_ERROR_STATUS = {"run": 125}
BROKEN_PIPE_STATUS = 128 + signal.SIGPIPE
FLAG_VALUE_STATUS = 125


def exit_status(handler: str, error: LayerlabError) -> int:
    """Return the exit status of `handler` failing with `error`, as Docker's CLI gives it."""
    if isinstance(error, FlagValueError):
        return FLAG_VALUE_STATUS
    if error.exit_code != LayerlabError.exit_code:
        # A status of its own: 126 or 127 from a command that could not start, 1 from a failed build.
        return error.exit_code
    return ENGINE_ERROR_STATUS.get(handler, 1)


def _command_word(argv: list[str]) -> str | None:
    """Return the first word of `argv` that is not a global option such as --debug; None for top-level help."""
    words = iter(argv)
    for word in words:
        if word in ("-h", "--help"):
            return None
        if word in parsers.GLOBAL_VALUE_FLAGS:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def _unknown_command_message(parser, word: str) -> str:
    # Docker prints the first and last lines; the suggestion is layerlab's own.
    message = f"layerlab: '{word}' is not a layerlab command.\n"
    nearest = difflib.get_close_matches(word, parsers.command_names(parser), n=1)
    if nearest:
        message += f"Did you mean '{nearest[0]}'?\n"
    return message + "See 'layerlab --help'\n"


# Foreground commands that stop on SIGTERM and SIGHUP as on Ctrl-C: they kill
# their container, tear down its network and honour `run --rm`.
STOP_SIGNAL_COMMANDS = {"run", "build"}
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class StopSignal(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised as an interrupt so that the clean-up of Ctrl-C runs."""

    def __init__(self, number: int):
        super().__init__(number)
        self.number = number


@contextlib.contextmanager
def _stop_signals_as_interrupts(enabled: bool):
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_stop(number, frame):
        # A second signal must not cut the clean-up short.
        for ignored in STOP_SIGNALS:
            signal.signal(ignored, signal.SIG_IGN)
        raise StopSignal(number)

    previous = {number: signal.signal(number, raise_stop) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def _client_config(directory: str | None):
    """Point DOCKER_CONFIG, the folder of config.json with the registry logins, at `directory` for one command."""
    if directory is None:
        yield
        return
    previous = os.environ.get("DOCKER_CONFIG")
    os.environ["DOCKER_CONFIG"] = directory
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("DOCKER_CONFIG", None)
        else:
            os.environ["DOCKER_CONFIG"] = previous


LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR,
              "fatal": logging.CRITICAL}


def _configure_logging(debug: bool, log_level: str | None = None) -> None:
    if debug or os.environ.get("LAYERLAB_DEBUG"):
        level = logging.DEBUG
    else:
        level = LOG_LEVELS[log_level or "warn"]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def console_main() -> None:
    """Run the `layerlab` program and leave without the interpreter's teardown.

    Tearing down the modules a command loaded takes longer than starting a
    container, and nothing is left to clean up by then: every command
    releases its mounts, locks and temporary files before `main` returns.
    """
    status = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        if stream is None:
            continue
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):
            # A reader such as `head` that left early, or a closed stream: the output is theirs to drop.
            pass
    os._exit(status)


if __name__ == "__main__":
    console_main()
