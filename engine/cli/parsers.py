"""Argument parsers for every sub-command, with docker's flag names."""

from __future__ import annotations

import argparse

from layerlab.engine.cli import container_parsers, network_commands, transfer_commands, volume_commands


# argparse would print the command as `image ...`, which reads as required.
RUN_USAGE = "{command} [OPTIONS] IMAGE [COMMAND] [ARG...]"


# Docker's CLI exits with 125 for an unknown or invalid flag and with 1 for
# a wrong number of arguments.
FLAG_ERROR_STATUS = 125
ARGUMENT_COUNT_STATUS = 1


class UsageError(Exception):
    """A command line that does not parse, with the exit status Docker's CLI gives it."""

    def __init__(self, message, *, prog="layerlab", usage="", exit_status=FLAG_ERROR_STATUS):
        super().__init__(message)
        self.prog = prog
        self.usage = usage
        self.exit_status = exit_status


_REQUIRED_PREFIX = "the following arguments are required: "
_UNRECOGNIZED_PREFIX = "unrecognized arguments: "


class _Parser(argparse.ArgumentParser):
    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        # A sub-command reports its own unknown arguments, so the message names it rather than `layerlab`.
        if extras and self.prog != "layerlab":
            self.error(_UNRECOGNIZED_PREFIX + " ".join(extras))
        return namespace, extras

    def error(self, message):
        if message.startswith(_REQUIRED_PREFIX):
            raise self._usage_error(self._missing_arguments_message(message.removeprefix(_REQUIRED_PREFIX)),
                                    ARGUMENT_COUNT_STATUS)
        if message.startswith(_UNRECOGNIZED_PREFIX):
            extra = message.removeprefix(_UNRECOGNIZED_PREFIX)
            if extra.startswith("-"):
                raise self._usage_error(f"unknown flag: {extra.split()[0]}", FLAG_ERROR_STATUS)
            raise self._usage_error(f'"{self.prog}" got more arguments than it accepts: {extra}',
                                    ARGUMENT_COUNT_STATUS)
        command = self.prog.removeprefix("layerlab ")
        raise self._usage_error(f"{command}: {message}" if self.prog != "layerlab" else message, FLAG_ERROR_STATUS)

    def _usage_error(self, message, exit_status):
        return UsageError(message, prog=self.prog, usage=self.format_usage(), exit_status=exit_status)

    def _missing_arguments_message(self, names):
        positionals = self._positionals._group_actions
        required = [action for action in positionals
                    if action.nargs not in (argparse.REMAINDER, argparse.OPTIONAL, argparse.ZERO_OR_MORE)]
        count = sum(action.nargs if isinstance(action.nargs, int) else 1 for action in required)
        fixed = all(action.nargs is None or isinstance(action.nargs, int) for action in positionals)
        quantity = "exactly" if fixed else "at least"
        plural = "" if count == 1 else "s"
        # argparse lists a REMAINDER argument such as COMMAND [ARG...] among the required ones, but it may be empty.
        missing = ", ".join(name for name in names.split(", ") if not name.endswith("...]")) or names
        return f'"{self.prog}" requires {quantity} {count} argument{plural}: missing {missing}.'


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Return the parser of every command, or with `command`, one whose only real sub-parser is that command's.

    Building all 90-odd sub-parsers takes about as long as starting a
    container. A command line that names its command therefore gets the
    parser of that command alone, and the others are recorded by name only.
    """
    parser = _Parser(prog="layerlab", description="Build and run container images with no daemon.")
    parser.add_argument("--debug", "-D", action="store_true", help="log what the engine does")
    parser.add_argument("--version", "-v", action="store_true", help="print the version and exit")
    parser.add_argument("--log-level", "-l", choices=["debug", "info", "warn", "error", "fatal"], default=None,
                        help="logging level (default warn)")
    parser.add_argument("--config", default=None, metavar="DIR",
                        help="folder of the client's config.json (default ~/.docker or $DOCKER_CONFIG)")
    # Docker's flags for reaching a daemon: accepted by the parser so that the
    # error can explain why they do not apply.
    # Their destinations carry a prefix, because sub-commands use names such as `context`.
    for flags in (("--host", "-H"), ("--context", "-c"), ("--tlscacert",), ("--tlscert",), ("--tlskey",)):
        parser.add_argument(*flags, dest=_daemon_dest(flags[0]), default=None, help=argparse.SUPPRESS)
    for flag in ("--tls", "--tlsverify"):
        parser.add_argument(flag, dest=_daemon_dest(flag), action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(command=None, handler=None)
    action = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    sub = _SelectedSubparsers(action, command)

    for add in (_bootstrap, _build, _run, _create, _images, _ps, _history, _diff, _commit, _inspect,
                _tag, _rm, _rmi, _version, _info, _fsck, _system, _builder, _import):
        add(sub)
    container_parsers.add_commands(sub)
    transfer_commands.add_parsers(sub, _command)
    network_commands.add_parsers(sub, _command)
    volume_commands.add_parsers(sub, _command)
    _image_group(sub)
    _container_group(sub)
    parser.command_names = sub.names
    return parser


# Global flags that take a value, so the word after them is not the command.
GLOBAL_VALUE_FLAGS = {"--log-level", "-l", "--config", "--host", "-H", "--context", "-c", "--tlscacert", "--tlscert",
                      "--tlskey"}
_DAEMON_FLAGS = {"--host": "-H/--host", "--context": "-c/--context", "--tlscacert": "--tlscacert",
                 "--tlscert": "--tlscert", "--tlskey": "--tlskey", "--tls": "--tls", "--tlsverify": "--tlsverify"}


def _daemon_dest(flag: str) -> str:
    return "daemon_" + flag.lstrip("-")


def daemon_flag_given(options) -> str | None:
    """Return the first of Docker's daemon-connection flags given on the command line, or None."""
    for flag, shown in _DAEMON_FLAGS.items():
        if getattr(options, _daemon_dest(flag), None):
            return shown
    return None


def command_names(parser: argparse.ArgumentParser) -> list[str]:
    """Return the names of the top-level commands, aliases included, whether or not their parsers were built."""
    return list(parser.command_names)


class _SelectedSubparsers:
    """The top-level sub-parser action, building a real parser only for the selected command."""

    def __init__(self, action, selected: str | None):
        self._action = action
        self._selected = selected
        self.names: list[str] = []

    def add_parser(self, name, **options):
        aliases = options.get("aliases", ())
        self.names += [name, *aliases]
        if self._selected is None or self._selected == name or self._selected in aliases:
            return self._action.add_parser(name, **options)
        return _UNBUILT


class _Unbuilt:
    """Stands in for the parser of a command this command line does not use: every call is a no-op."""

    def __getattr__(self, name):
        return self._ignore

    def _ignore(self, *args, **options):
        return self


_UNBUILT = _Unbuilt()


def _command(sub, name, handler, help_text, add_help=True):
    parser = sub.add_parser(name, help=help_text, description=help_text, add_help=add_help)
    parser.set_defaults(handler=handler)
    return parser


def _bootstrap(sub):
    p = _command(sub, "bootstrap", "bootstrap", "Make a base image with no registry: busybox or debian:SUITE")
    p.add_argument("name", help="busybox, or debian:SUITE such as debian:bookworm")
    p.add_argument("--mirror", default="http://deb.debian.org/debian", help="Debian mirror for debian:SUITE")


def _build(sub):
    p = _command(sub, "build", "build", "Build an image from a Dockerfile")
    p.add_argument("context", help="the build context folder")
    p.add_argument("-t", "--tag", action="append", default=[], help="name and optionally a tag (name:tag)")
    p.add_argument("-f", "--file", help="the Dockerfile (default: CONTEXT/Dockerfile)")
    p.add_argument("--no-cache", action="store_true", help="do not use the build cache")
    p.add_argument("--build-arg", action="append", default=[], help="set a build-time variable (KEY=value)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image ID")
    p.add_argument("--target", help="build only up to this stage")
    p.add_argument("--cache-from", action="append", default=[],
                   help="image to use as a cache source; a step hits only from it or its ancestors")
    p.add_argument("--progress", default="auto", choices=["auto", "plain", "tty", "rawjson"],
                   help="output style")
    p.add_argument("--network", default="host", help="network for RUN steps: host, none, bridge or a network name")
    p.add_argument("--secret", action="append", default=[],
                   help="secret for RUN --mount=type=secret: id=NAME,src=PATH (mounted at /run/secrets/NAME)")


def _add_run_flags(p):
    p.add_argument("--name", default="", help="assign a name to the container")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("--restart", default="no",
                   help="restart policy: only no, because no layerlab process outlives a container to restart it")
    p.add_argument("-e", "--env", action="append", default=[], help="set an environment variable (KEY=value)")
    p.add_argument("-w", "--workdir", default="", help="working directory inside the container")
    p.add_argument("-u", "--user", default=None, help="user name or uid, optionally with :group")
    p.add_argument("--entrypoint", default=None, help="override the image's ENTRYPOINT (clears its CMD)")
    p.add_argument("-h", "--hostname", default="", help="container host name")
    p.add_argument("--network", "--net", default="",
                   help="network mode: bridge (the default as root), host (the default rootless), none, "
                        "a network name or container:NAME")
    p.add_argument("-p", "--publish", action="append", default=[],
                   help="publish a container port: [ip:][hostport:]containerport[/tcp|udp]")
    p.add_argument("-P", "--publish-all", action="store_true", help="publish every EXPOSEd port to a free host port")
    p.add_argument("-i", "--interactive", action="store_true", help="keep standard input open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background")
    p.add_argument("--env-file", action="append", default=[], help="read environment variables from a file")
    p.add_argument("-l", "--label", action="append", default=[], help="set a label on the container (KEY=value)")
    p.add_argument("-v", "--volume", action="append", default=[],
                   help="bind mount /host:/container[:ro], or a named volume NAME:/container")
    p.add_argument("--mount", action="append", default=[],
                   help="attach a mount: type=bind|volume|tmpfs,source=...,target=...[,readonly]")
    p.add_argument("--tmpfs", action="append", default=[], help="mount a tmpfs: /path[:options such as size=64m]")
    p.add_argument("--read-only", action="store_true", help="mount the container's root file system read-only")
    p.add_argument("--init", action="store_true", help="run tini as PID 1 to reap zombies and forward signals")
    p.add_argument("--cap-add", action="append", default=[], help="add a Linux capability, such as NET_ADMIN or ALL")
    p.add_argument("--cap-drop", action="append", default=[], help="drop a Linux capability, such as CHOWN or ALL")
    p.add_argument("--privileged", action="store_true",
                   help="give every capability, the host's devices and a writable /sys, without masked paths or seccomp")
    p.add_argument("--security-opt", action="append", default=[],
                   help="no-new-privileges or seccomp=unconfined")
    p.add_argument("-m", "--memory", default="", help="memory limit in bytes or with a unit: 512m, 1g")
    p.add_argument("--cpus", default="", help="number of CPUs, such as 1.5")
    p.add_argument("--pids-limit", type=int, default=0, help="maximum number of processes (0: unlimited)")
    p.add_argument("--ulimit", action="append", default=[], help="resource limit NAME=SOFT[:HARD], such as nofile=1024")
    p.add_argument("--stop-signal", default="", help="signal that stops the container (default: SIGTERM)")
    p.add_argument("--stop-timeout", type=int, default=None, help="seconds to wait before killing the container on stop")
    p.add_argument("image", help="the image to run")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]",
                   help="command and arguments (default: the image's CMD)")


def _run(sub):
    # -h is --hostname, as in docker run, so help is --help only.
    p = _command(sub, "run", "run", "Create and run a new container from an image", add_help=False)
    p.usage = RUN_USAGE.format(command="layerlab run")
    p.add_argument("--help", action="help", help="show this help")
    _add_run_flags(p)


def _create(sub):
    p = _command(sub, "create", "create", "Create a new container without starting it", add_help=False)
    p.usage = RUN_USAGE.format(command="layerlab create")
    p.add_argument("--help", action="help", help="show this help")
    _add_run_flags(p)


def _images(sub):
    p = _command(sub, "images", "images", "List images")
    _add_images_flags(p)


def _add_images_flags(p):
    p.add_argument("repository", nargs="?", help="only images of this repository")
    p.add_argument("-q", "--quiet", action="store_true", help="print only image IDs")
    p.add_argument("--no-trunc", action="store_true", help="do not shorten IDs")
    p.add_argument("-a", "--all", action="store_true", help="also show intermediate images (the build cache's steps)")
    p.add_argument("--digests", action="store_true",
                   help="show the manifest digest that a registry gave each image at pull or push")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="dangling=true|false, reference=PATTERN or label=KEY[=VALUE]; repeat to combine")
    container_parsers.add_format(p, "images")


def _ps(sub):
    p = _command(sub, "ps", "ps", "List containers")
    _add_ps_flags(p)


def _add_ps_flags(p):
    p.add_argument("-a", "--all", action="store_true", help="show all containers, not only running ones")
    p.add_argument("-q", "--quiet", action="store_true", help="print only container IDs")
    p.add_argument("-l", "--latest", action="store_true", help="show only the latest created container")
    p.add_argument("-n", "--last", type=int, default=-1, help="show the N most recently created containers")
    p.add_argument("-s", "--size", action="store_true", help="show the size of each container's files")
    p.add_argument("--no-trunc", action="store_true", help="do not shorten output")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="status=, name=, id=, ancestor=, label=KEY[=VALUE] or exited=CODE; repeat to combine")
    container_parsers.add_format(p, "containers")


def _history(sub):
    p = _command(sub, "history", "history", "Show the history of an image")
    _add_history_flags(p)


def _add_history_flags(p):
    p.add_argument("image")
    p.add_argument("-q", "--quiet", action="store_true", help="print only image IDs")
    p.add_argument("--no-trunc", action="store_true", help="do not shorten output")
    p.add_argument("-H", "--human", default="true", choices=["true", "false"], help="sizes in human units")
    container_parsers.add_format(p, "history rows")


def _diff(sub):
    p = _command(sub, "diff", "diff", "Inspect changes to files on a container's filesystem")
    p.add_argument("container")


def _commit(sub):
    p = _command(sub, "commit", "commit", "Create a new image from a container's changes")
    _add_commit_flags(p)


def _add_commit_flags(p):
    p.add_argument("-m", "--message", default="", help="commit message")
    p.add_argument("-a", "--author", default="", help='author (e.g. "Jane Doe <jane@example.com>")')
    p.add_argument("-c", "--change", action="append", default=[], help="apply a Dockerfile instruction (CMD, ENV, ...)")
    p.add_argument("-p", "--pause", default=True, action=argparse.BooleanOptionalAction,
                   help="pause the container while committing (the default)")
    p.add_argument("container")
    p.add_argument("repository", nargs="?", help="name[:tag] for the new image")


def _inspect(sub):
    p = _command(sub, "inspect", "inspect", "Return low-level information on images or containers")
    _add_inspect_flags(p)


def _add_inspect_flags(p):
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("-f", "--format", default=None, help="Go-template-like path such as {{.Config.Cmd}}")
    p.add_argument("--type", choices=["image", "container"], default=None, help="what NAME is")


def _tag(sub):
    p = _command(sub, "tag", "tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
    p.add_argument("source")
    p.add_argument("target")


def _rm(sub):
    p = _command(sub, "rm", "rm", "Remove one or more containers")
    _add_rm_flags(p)


def _add_rm_flags(p):
    p.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")


def _rmi(sub):
    p = _command(sub, "rmi", "rmi", "Remove one or more images")
    _add_rmi_flags(p)


def _add_rmi_flags(p):
    p.add_argument("-f", "--force", action="store_true", help="remove even if containers use it")
    p.add_argument("images", nargs="+", metavar="IMAGE")


def _version(sub):
    _command(sub, "version", "version", "Show the layerlab version")


def _info(sub):
    _command(sub, "info", "info", "Show what the host allows and which fallbacks are in use")


def _fsck(sub):
    p = _command(sub, "fsck", "fsck", "Check every digest and reference; repair what a crash left")
    p.add_argument("--repair", action="store_true", help="remove what is broken or left over")


def _system(sub):
    p = _command(sub, "system", None, "Manage the store")
    group = p.add_subparsers(dest="system_command", parser_class=_Parser, metavar="COMMAND")
    group.required = True
    prune = group.add_parser("prune", help="remove stopped containers, dangling images, cache and unused blobs")
    prune.set_defaults(handler="system_prune")
    prune.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    prune.add_argument("-a", "--all", action="store_true", help="also remove unused tagged images")
    info = group.add_parser("info", help="what the host allows")
    info.set_defaults(handler="info")
    df = group.add_parser("df", help="disk usage")
    df.set_defaults(handler="system_df")
    df.add_argument("-v", "--verbose", action="store_true", help="accepted; the summary table is printed")


def _builder(sub):
    p = _command(sub, "builder", None, "Manage the build cache")
    group = p.add_subparsers(dest="builder_command", parser_class=_Parser, metavar="COMMAND")
    group.required = True
    prune = group.add_parser("prune", help="remove the build cache")
    prune.set_defaults(handler="builder_prune")
    prune.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    prune.add_argument("-a", "--all", action="store_true", help="remove all cache entries (always the case here)")


def _image_group(sub):
    p = _command(sub, "image", None, "Manage images")
    group = p.add_subparsers(dest="image_command", parser_class=_Parser, metavar="COMMAND")
    group.required = True
    ls = group.add_parser("ls", aliases=["list"], help="list images")
    ls.set_defaults(handler="images")
    _add_images_flags(ls)
    inspect = group.add_parser("inspect", help="inspect images")
    inspect.set_defaults(handler="inspect", type_default="image")
    _add_inspect_flags(inspect)
    rm = group.add_parser("rm", help="remove images")
    rm.set_defaults(handler="rmi")
    _add_rmi_flags(rm)
    history = group.add_parser("history", help="show the history of an image")
    history.set_defaults(handler="history")
    _add_history_flags(history)
    tag = group.add_parser("tag", help="tag an image")
    tag.set_defaults(handler="tag")
    tag.add_argument("source")
    tag.add_argument("target")
    prune = group.add_parser("prune", help="remove unused images")
    prune.set_defaults(handler="image_prune")
    container_parsers.add_force(prune)
    prune.add_argument("-a", "--all", action="store_true", help="remove every image no container uses, not only dangling ones")
    _add_import_flags(group.add_parser("import", help="import a tarball as a filesystem image"))


def _import(sub):
    _add_import_flags(_command(sub, "import", "import", "Import the contents from a tarball to create a filesystem image"))


def _add_import_flags(p):
    p.set_defaults(handler="import")
    p.add_argument("-c", "--change", action="append", default=[], help="apply a Dockerfile instruction (CMD, ENV, ...)")
    p.add_argument("-m", "--message", default="", help="commit message for the imported image")
    p.add_argument("file", metavar="FILE", help="a tar, .tar.gz, .tar.bz2 or .tar.xz file, or - for standard input")
    p.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]", help="name for the new image")


def _container_group(sub):
    p = _command(sub, "container", None, "Manage containers")
    group = p.add_subparsers(dest="container_command", parser_class=_Parser, metavar="COMMAND")
    group.required = True
    container_parsers.add_commands(group)
    container_parsers.add_group_commands(group)
    ls = group.add_parser("ls", aliases=["list", "ps"], help="list containers")
    ls.set_defaults(handler="ps")
    _add_ps_flags(ls)
    rm = group.add_parser("rm", help="remove containers")
    rm.set_defaults(handler="rm")
    _add_rm_flags(rm)
    inspect = group.add_parser("inspect", help="inspect containers")
    inspect.set_defaults(handler="inspect", type_default="container")
    _add_inspect_flags(inspect)
    diff = group.add_parser("diff", help="changes to a container's files")
    diff.set_defaults(handler="diff")
    diff.add_argument("container")
    commit = group.add_parser("commit", help="create an image from a container")
    commit.set_defaults(handler="commit")
    _add_commit_flags(commit)
    create = group.add_parser("create", help="create a container", add_help=False,
                              usage=RUN_USAGE.format(command="layerlab container create"))
    create.set_defaults(handler="create")
    create.add_argument("--help", action="help", help="show this help")
    _add_run_flags(create)
    run = group.add_parser("run", help="run a container", add_help=False,
                           usage=RUN_USAGE.format(command="layerlab container run"))
    run.set_defaults(handler="run")
    run.add_argument("--help", action="help", help="show this help")
    _add_run_flags(run)
