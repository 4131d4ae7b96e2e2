"""`layerlab network ...` and `layerlab port`: parsers and handlers, joined to the CLI by `add_parsers` and `HANDLERS`.

The network package is imported inside the handlers, and pyroute2 only by
the handlers that touch links, so other commands do not pay for them.
"""

from __future__ import annotations

import json
import logging

from layerlab.engine.errors import LayerlabError, NotFoundError

log = logging.getLogger(__name__)


def add_parsers(sub, command) -> None:
    """Add `network` with its sub-commands and `port` to the top-level sub-parsers."""
    from layerlab.engine.cli.parsers import _Parser

    p = command(sub, "network", None, "Manage networks")
    group = p.add_subparsers(dest="network_command", parser_class=_Parser, metavar="COMMAND")
    group.required = True

    create = group.add_parser("create", help="create a bridge network")
    create.set_defaults(handler="network_create")
    create.add_argument("--subnet", default=None, help="IPv4 subnet in CIDR form, such as 10.89.0.0/24 (default: a free /24)")
    create.add_argument("-d", "--driver", default="bridge", help="network driver (only bridge)")
    create.add_argument("name")

    ls = group.add_parser("ls", aliases=["list"], help="list networks")
    ls.set_defaults(handler="network_ls")
    ls.add_argument("-q", "--quiet", action="store_true", help="print only network IDs")
    ls.add_argument("--no-trunc", action="store_true", help="do not shorten IDs")

    inspect = group.add_parser("inspect", help="show networks as JSON")
    inspect.set_defaults(handler="network_inspect")
    inspect.add_argument("names", nargs="+", metavar="NETWORK")

    rm = group.add_parser("rm", aliases=["remove"], help="remove networks")
    rm.set_defaults(handler="network_rm")
    rm.add_argument("names", nargs="+", metavar="NETWORK")

    prune = group.add_parser("prune", help="remove networks that no container uses and what crashed containers "
                                           "left behind")
    prune.set_defaults(handler="network_prune")
    prune.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")

    connect = group.add_parser("connect", help="connect a container to a network (a stopped one at its next start)")
    connect.set_defaults(handler="network_connect")
    connect.add_argument("network")
    connect.add_argument("container")

    disconnect = group.add_parser("disconnect", help="disconnect a container from a network")
    disconnect.set_defaults(handler="network_disconnect")
    disconnect.add_argument("-f", "--force", action="store_true", help="accepted for compatibility")
    disconnect.add_argument("network")
    disconnect.add_argument("container")

    port = command(sub, "port", "port", "List the published ports of a container")
    port.add_argument("container")
    port.add_argument("private_port", nargs="?", metavar="PRIVATE_PORT[/PROTO]", help="only this container port")


def _engine():
    from layerlab.engine.api import Engine

    return Engine()


def _store(engine):
    from layerlab.engine import network

    return network.network_store(engine)


def network_create(options, presenter) -> int:
    from layerlab.engine.errors import InvalidArgumentError

    if options.driver != "bridge":
        raise InvalidArgumentError(f"network driver {options.driver!r} is not supported: use bridge")
    created = _store(_engine()).create(options.name, options.subnet)
    presenter.write(created.id + "\n")
    return 0


def network_ls(options, presenter) -> int:
    from layerlab.engine.network.views import list_view

    presenter.show(list_view(_store(_engine()).list() + _default_if_missing(), quiet=options.quiet,
                             no_trunc=options.no_trunc))
    return 0


def _default_if_missing():
    # `bridge` is listed before its first use too, as in Docker, without making its record.
    from layerlab.engine.network.records import DEFAULT_NETWORK, Network
    from layerlab.engine.network.views import pseudo_network_id

    store = _store(_engine())
    if any(n.name == DEFAULT_NETWORK for n in store.list()):
        return []
    return [Network(DEFAULT_NETWORK, pseudo_network_id(DEFAULT_NETWORK), "", "", "", "")]


def network_inspect(options, presenter) -> int:
    from layerlab.engine.network.views import inspect_document

    store = _store(_engine())
    documents = []
    status = 0
    for name in options.names:
        try:
            documents.append(inspect_document(store.get(name)))
        except NotFoundError as error:
            presenter.error(f"Error: {error}\n")
            status = 1
    presenter.write(json.dumps(documents, indent=4) + "\n")
    return status


def network_rm(options, presenter) -> int:
    from layerlab.engine.network import manage

    store = _store(_engine())
    status = 0
    for name in options.names:
        try:
            manage.remove_network(store, store.get(name))
            presenter.write(name + "\n")
        except LayerlabError as error:
            presenter.error(f"Error response from daemon: {error}\n")
            status = 1
    return status


def network_prune(options, presenter) -> int:
    from layerlab.engine.cli.container_commands import confirmed
    from layerlab.engine.network import manage

    if not confirmed(options, presenter, "network"):
        return 0
    engine = _engine()
    removed = manage.prune(_store(engine), manage.networks_in_use(engine))
    if removed:
        # Docker 20.10 ends the list with a blank line.
        presenter.write("Deleted Networks:\n" + "".join(f"{name}\n" for name in removed) + "\n")
    return 0


def network_connect(options, presenter) -> int:
    from layerlab.engine.network import manage

    engine = _engine()
    manage.connect(engine, _store(engine), options.network, engine.container(options.container))
    return 0


def network_disconnect(options, presenter) -> int:
    from layerlab.engine.network import manage

    engine = _engine()
    manage.disconnect(engine, _store(engine), options.network, engine.container(options.container))
    return 0


def port(options, presenter) -> int:
    from layerlab.engine import network
    from layerlab.engine.errors import NotFoundError

    record = _engine().container(options.container)
    lines = network.port_lines(record)
    if options.private_port:
        wanted = options.private_port if "/" in options.private_port else options.private_port + "/tcp"
        lines = [line for line in lines if line.startswith(wanted + " ")]
        if not lines:
            raise NotFoundError(f"No public port '{wanted}' published for {record.name}")
    presenter.write("".join(line + "\n" for line in lines))
    return 0


HANDLERS = {
    "network_create": network_create,
    "network_ls": network_ls,
    "network_inspect": network_inspect,
    "network_rm": network_rm,
    "network_prune": network_prune,
    "network_connect": network_connect,
    "network_disconnect": network_disconnect,
    "port": port,
}
