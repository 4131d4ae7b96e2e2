"""Argument parsers for the commands on containers: attach, start, stop, kill, restart, wait, logs, exec, top,
cp, export, rename, pause, unpause and stats.

`add_commands` adds them both at the top level (`layerlab stop`) and under
`layerlab container`, as Docker does; `add_group_commands` adds those that
exist only under `layerlab container` (prune).
"""

from __future__ import annotations

import argparse


def add_commands(sub) -> None:
    for add in (_attach, _start, _stop, _kill, _restart, _wait, _logs, _exec, _top, _cp, _export, _rename, _pause,
                _unpause, _stats):
        add(sub)


def add_group_commands(group) -> None:
    p = _command(group, "prune", "Remove all stopped containers")
    p.set_defaults(handler="container_prune")
    add_force(p)


def add_force(parser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")


def add_format(parser, what: str) -> None:
    parser.add_argument("--format", default=None,
                        help=f"print {what} with a Go template, such as '{{{{.ID}}}}' or 'table {{{{.ID}}}}\\t{{{{.Names}}}}'")


def _command(sub, name, help_text, **options):
    parser = sub.add_parser(name, help=help_text, description=help_text, **options)
    parser.set_defaults(handler=name)
    return parser


def _containers(parser):
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def _attach(sub):
    p = _command(sub, "attach", "Attach to a running container's output until it exits")
    # NOTE: a detached container's stdin is /dev/null, so there is no input to attach to, with or without this flag.
    p.add_argument("--no-stdin", action="store_true", help="do not attach standard input (never attached here)")
    p.add_argument("container")


def _start(sub):
    p = _command(sub, "start", "Start one or more stopped containers")
    p.add_argument("-a", "--attach", action="store_true", help="print the container's output until it exits")
    _containers(p)


def _add_time(parser):
    # Without -t the container's --stop-timeout applies, else 10 seconds, as in Docker.
    parser.add_argument("-t", "--time", type=int, default=None,
                        help="seconds to wait for the container to stop before killing it "
                             "(default: the container's --stop-timeout, else 10)")


def _stop(sub):
    p = _command(sub, "stop", "Stop one or more running containers")
    _add_time(p)
    _containers(p)


def _kill(sub):
    p = _command(sub, "kill", "Kill one or more running containers")
    p.add_argument("-s", "--signal", default="KILL", help="signal to send: a name such as TERM or a number (default KILL)")
    _containers(p)


def _restart(sub):
    p = _command(sub, "restart", "Restart one or more containers")
    _add_time(p)
    _containers(p)


def _wait(sub):
    p = _command(sub, "wait", "Block until one or more containers stop, then print their exit codes")
    _containers(p)


def _logs(sub):
    p = _command(sub, "logs", "Fetch the logs of a container")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new output until the container exits")
    p.add_argument("--tail", default="all", help='number of lines to show from the end of the logs, or "all"')
    p.add_argument("-t", "--timestamps", action="store_true", help="show the time of each line")
    p.add_argument("container")


def _exec(sub):
    # -h is not help here either, to match run's flags.
    p = _command(sub, "exec", "Run a command in a running container", add_help=False)
    p.add_argument("--help", action="help", help="show this help")
    p.add_argument("-e", "--env", action="append", default=[], help="set an environment variable (KEY=value)")
    p.add_argument("-u", "--user", default=None, help="user name or uid, optionally with :group")
    p.add_argument("-w", "--workdir", default="", help="working directory inside the container")
    p.add_argument("--privileged", action="store_true", help="give the command every capability")
    p.add_argument("-i", "--interactive", action="store_true", help="pass standard input to the command")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    p.add_argument("-d", "--detach", action="store_true",
                   help="start the command in the background and discard its output")
    p.add_argument("container")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="command and arguments")


def _top(sub):
    p = _command(sub, "top", "Display the running processes of a container")
    p.add_argument("container")
    p.add_argument("ps_options", nargs=argparse.REMAINDER, help="ps options (accepted, no effect)")


def _cp(sub):
    p = _command(sub, "cp", "Copy files/folders between a container and the local filesystem")
    p.add_argument("-a", "--archive", action="store_true", help="keep the owners (uid:gid) of the source files")
    p.add_argument("-L", "--follow-link", action="store_true", help="always follow a symlink in SRC_PATH")
    p.add_argument("source", metavar="SRC", help="CONTAINER:SRC_PATH, a local path, or - for a tar on stdin")
    p.add_argument("dest", metavar="DEST", help="CONTAINER:DEST_PATH, a local path, or - for a tar on stdout")


def _export(sub):
    p = _command(sub, "export", "Export a container's filesystem as a tar archive")
    p.add_argument("-o", "--output", default=None, help="write to this file instead of standard output")
    p.add_argument("container")


def _rename(sub):
    p = _command(sub, "rename", "Rename a container")
    p.add_argument("container")
    p.add_argument("new_name", metavar="NEW_NAME")


def _pause(sub):
    p = _command(sub, "pause", "Pause all processes within one or more containers")
    _containers(p)


def _unpause(sub):
    p = _command(sub, "unpause", "Unpause all processes within one or more containers")
    _containers(p)


def _stats(sub):
    p = _command(sub, "stats", "Display a live stream of container resource usage statistics")
    p.add_argument("-a", "--all", action="store_true", help="show all containers, not only running ones")
    p.add_argument("--no-stream", action="store_true", help="print one sample and exit")
    p.add_argument("--no-trunc", action="store_true", help="do not shorten IDs")
    add_format(p, "statistics")
    p.add_argument("containers", nargs="*", metavar="CONTAINER")
