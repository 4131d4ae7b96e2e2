"""The `layerlab` command line: docker's sub-commands and flags over the Engine API.

Each sub-command is a parser built by a function in `parsers` and a
handler in `commands`; `main` joins them through one table. Handlers never
print: they hand their output to a presenter, which is the terminal here
and the notebook in the kernel.
"""

from __future__ import annotations

import logging
import os
import sys

from layerlab.engine.cli import parsers
from layerlab.engine.cli.presenter import TerminalPresenter
from layerlab.engine.errors import LayerlabError

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None, presenter=None) -> int:
    """Run one `layerlab` command line; return its exit status."""
    presenter = presenter or TerminalPresenter()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = parsers.build_parser()

    try:
        options = parser.parse_args(argv)
    except parsers.UsageError as error:
        presenter.error(f"layerlab: {error}\nSee 'layerlab --help'.\n")
        return 125
    except SystemExit as exit_request:
        # argparse exits after --help; the kernel must not lose its process to it.
        return int(exit_request.code or 0)

    _configure_logging(options.debug)
    if options.command is None:
        presenter.write(parser.format_help())
        return 0

    from layerlab.engine.cli import commands

    handler = commands.HANDLERS[options.handler]
    try:
        return handler(options, presenter) or 0
    except LayerlabError as error:
        presenter.error(f"layerlab: {error}\n")
        return error.exit_code
    except KeyboardInterrupt:
        presenter.error("layerlab: interrupted\n")
        return 130
    except OSError as error:
        log.debug("command failed", exc_info=True)
        presenter.error(f"layerlab: {error}\n")
        return 125


def _configure_logging(debug: bool) -> None:
    level = logging.DEBUG if debug or os.environ.get("LAYERLAB_DEBUG") else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


if __name__ == "__main__":
    sys.exit(main())
