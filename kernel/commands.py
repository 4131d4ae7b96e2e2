"""Run one engine command in-process, as `docker ARGS` would run in a shell."""

from __future__ import annotations

import logging
import shlex
import sys

log = logging.getLogger(__name__)

ENGINE_MAIN_MODULE = "layerlab.engine.cli.main"


class DockerCommandError(Exception):
    """A docker command that exited with a non-zero status.

    Raising it makes the cell fail (status "error"), so nbclient and nbval
    stop on a broken notebook. The engine has already written its message
    to stderr, so IPython shows this one line instead of a traceback.
    """

    def __init__(self, argv: list[str], exit_code: int):
        self.argv = list(argv)
        self.exit_code = exit_code
        super().__init__(f"`docker {shlex.join(self.argv)}` exited with status {exit_code}")

    def _render_traceback_(self) -> list[str]:
        # IPython calls this hook in place of formatting the stack.
        return [f"{type(self).__name__}: {self}"]


def run_docker(argv: list[str], presenter) -> int:
    """Run `docker ARGV` through the engine's CLI with `presenter`; return its exit status."""
    main = _engine_main()
    if main is None:
        presenter.close()
        print(f"docker: the engine CLI ({ENGINE_MAIN_MODULE}) is not installed; reinstall layerlab",
              file=sys.stderr)
        return 125

    log.debug("running docker %s", shlex.join(argv))

    try:
        status = main(list(argv), presenter=presenter)
    except SystemExit as exit_request:
        # argparse exits on usage errors and after --help, having written
        # its message to sys.stderr or sys.stdout already.
        status = _exit_status(exit_request.code)
    finally:
        presenter.close()

    return status or 0


def _engine_main():
    try:
        from layerlab.engine.cli.main import main
    except ModuleNotFoundError as missing:
        if missing.name != ENGINE_MAIN_MODULE:
            raise
        log.error("failed to import %s: %s", ENGINE_MAIN_MODULE, missing)
        return None
    return main


def _exit_status(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code

    # sys.exit("message") prints the message and exits with status 1.
    print(code, file=sys.stderr)
    return 1
