"""`layerlab volume create|ls|rm|prune|inspect`: parsers and handlers, joined to the CLI by `add_parsers` and `HANDLERS`."""

from __future__ import annotations

import json
import logging

from layerlab.engine.errors import LayerlabError

log = logging.getLogger(__name__)


def add_parsers(sub, command) -> None:
    """Add `volume` with its sub-commands to the top-level sub-parsers."""
    from layerlab.engine.cli.parsers import _Parser

    p = command(sub, "volume", None, "Manage volumes")
    group = p.add_subparsers(dest="volume_command", parser_class=_Parser, metavar="COMMAND")
    group.required = True

    create = group.add_parser("create", help="create a volume")
    create.set_defaults(handler="volume_create")
    create.add_argument("-d", "--driver", default="local", help="volume driver (only local)")
    create.add_argument("--label", action="append", default=[], help="set metadata on the volume (KEY=value)")
    create.add_argument("name", nargs="?", default="", help="volume name (default: a random 64-hex name)")

    ls = group.add_parser("ls", aliases=["list"], help="list volumes")
    ls.set_defaults(handler="volume_ls")
    ls.add_argument("-q", "--quiet", action="store_true", help="print only volume names")

    inspect = group.add_parser("inspect", help="show volumes as JSON")
    inspect.set_defaults(handler="volume_inspect")
    inspect.add_argument("names", nargs="+", metavar="VOLUME")

    rm = group.add_parser("rm", aliases=["remove"], help="remove volumes")
    rm.set_defaults(handler="volume_rm")
    rm.add_argument("-f", "--force", action="store_true", help="do not fail when a volume does not exist")
    rm.add_argument("names", nargs="+", metavar="VOLUME")

    prune = group.add_parser("prune", help="remove every volume that no container uses")
    prune.set_defaults(handler="volume_prune")
    prune.add_argument("-f", "--force", action="store_true", help="do not prompt (always the case here)")


def _engine():
    from layerlab.engine.api import Engine

    return Engine()


def volume_create(options, presenter) -> int:
    from layerlab.engine.run_options import parse_labels
    from layerlab.engine.volumes import Volumes

    if options.driver != "local":
        presenter.error(f"Error response from daemon: create {options.name}: volume driver {options.driver!r} is "
                        "not supported; use local\n")
        return 1
    name = Volumes(_engine().root).create(options.name, parse_labels(options.label))
    presenter.write(name + "\n")
    return 0


def volume_ls(options, presenter) -> int:
    from layerlab.engine.volumes import Volumes

    names = Volumes(_engine().root).names()
    if options.quiet:
        presenter.write("".join(name + "\n" for name in names))
        return 0
    # Docker pads DRIVER to its header's width plus three spaces.
    lines = ["DRIVER    VOLUME NAME"] + [f"local     {name}" for name in names]
    presenter.write("\n".join(lines) + "\n")
    return 0


def volume_inspect(options, presenter) -> int:
    from layerlab.engine.volumes import Volumes

    volumes = Volumes(_engine().root)
    documents, status = [], 0
    for name in options.names:
        try:
            documents.append(volumes.inspect(name))
        except LayerlabError as error:
            presenter.error(f"Error: No such volume: {name}\n")
            log.debug("volume inspect %s: %s", name, error)
            status = 1
    presenter.write(json.dumps(documents, indent=4) + "\n")
    return status


def volume_rm(options, presenter) -> int:
    from layerlab.engine.errors import NotFoundError
    from layerlab.engine.volumes import Volumes, volume_users

    engine = _engine()
    volumes = Volumes(engine.root)
    users = volume_users(engine)
    status = 0
    for name in options.names:
        try:
            volumes.remove(name, users.get(name, []))
        except NotFoundError as error:
            if options.force:
                continue
            presenter.error(f"Error: No such volume: {name}\n")
            log.debug("volume rm %s: %s", name, error)
            status = 1
            continue
        except LayerlabError as error:
            presenter.error(f"Error response from daemon: {error}\n")
            status = 1
            continue
        presenter.write(name + "\n")
    return status


def volume_prune(options, presenter) -> int:
    from layerlab.engine.humanize import human_size
    from layerlab.engine.volumes import prune

    removed, reclaimed = prune(_engine())
    if removed:
        presenter.write("Deleted Volumes:\n" + "".join(name + "\n" for name in removed) + "\n")
    presenter.write(f"Total reclaimed space: {human_size(reclaimed)}\n")
    return 0


HANDLERS = {
    "volume_create": volume_create,
    "volume_ls": volume_ls,
    "volume_inspect": volume_inspect,
    "volume_rm": volume_rm,
    "volume_prune": volume_prune,
}
