"""Sub-commands that move images in and out: pull, push, login, logout, search, save, load.

Parsers and handlers live together here, apart from the other commands'
modules. `parsers` and `commands` register them through `add_parsers` and
`HANDLERS`. The registry modules are imported
inside the handlers, so other commands do not pay for them.
"""

from __future__ import annotations

import getpass
import logging
import os
import stat
import sys

from layerlab.engine.errors import InvalidArgumentError

log = logging.getLogger(__name__)


def add_parsers(sub, command) -> None:
    """Add the transfer sub-commands to `sub`; `command` is parsers._command."""
    p = command(sub, "pull", "pull", "Download an image from a registry")
    p.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
    p.add_argument("--platform", default=None, help="os/arch[/variant] to pull from a multi-platform image")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image name")

    p = command(sub, "push", "push", "Upload an image to a registry")
    p.add_argument("name", metavar="NAME[:TAG]")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the manifest digest line")

    p = command(sub, "login", "login", "Log in to a registry")
    p.add_argument("server", nargs="?", default=None, help="registry host[:port] (default: Docker Hub)")
    p.add_argument("-u", "--username", default="", help="user name")
    p.add_argument("-p", "--password", default="", help="password (prefer --password-stdin)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")

    p = command(sub, "logout", "logout", "Log out from a registry")
    p.add_argument("server", nargs="?", default=None, help="registry host[:port] (default: Docker Hub)")

    p = command(sub, "search", "search", "Search Docker Hub, or a registry's catalog with HOST/TERM")
    p.add_argument("term")
    p.add_argument("--limit", type=int, default=25, help="maximum number of results (1 to 100)")
    p.add_argument("--no-trunc", action="store_true", help="do not shorten descriptions")

    p = command(sub, "save", "save", "Save images to a tar archive (docker-archive by default)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-o", "--output", default=None, help="write to this file instead of standard output")
    p.add_argument("--format", default="docker-archive", choices=["docker-archive", "oci-archive"],
                   help="archive format")

    p = command(sub, "load", "load", "Load images from a docker-archive or oci-archive tar file")
    p.add_argument("-i", "--input", default=None, help="read from this file instead of standard input")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing")


def _engine():
    from layerlab.engine.api import Engine

    return Engine()


def pull(options, presenter) -> int:
    from layerlab.engine.registry.pull import pull as pull_image

    events = None if options.quiet else presenter.transfer_event
    result = pull_image(_engine(), options.name, platform=options.platform, events=events)
    if options.quiet:
        presenter.write(f"{result.reference}\n")
    return 0


def push(options, presenter) -> int:
    from layerlab.engine.registry.push import push as push_image

    if not options.quiet:
        push_image(_engine(), options.name, events=presenter.transfer_event)
        return 0

    lines = []
    push_image(_engine(), options.name, progress=lines.append)
    if lines:
        presenter.write(lines[-1])
    return 0


def login(options, presenter) -> int:
    from layerlab.engine.registry.login import login as log_in

    password = options.password
    if options.password_stdin:
        if password:
            raise InvalidArgumentError("--password and --password-stdin are mutually exclusive: use one")
        if not options.username:
            raise InvalidArgumentError("--password-stdin needs --username")
        password = sys.stdin.read().rstrip("\r\n")
    elif password:
        presenter.error("WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n")
    username = options.username
    if not username and sys.stdin.isatty():
        username = input("Username: ").strip()
    if not password and sys.stdin.isatty():
        password = getpass.getpass("Password: ")
    where = log_in(options.server, username, password, root=_engine().root)
    presenter.write(f"Login Succeeded (credentials stored in {where})\n")
    return 0


def logout(options, presenter) -> int:
    from layerlab.engine.registry.login import logout as log_out

    registry, removed = log_out(options.server)
    if removed:
        presenter.write(f"Removing login credentials for {registry}\n")
    else:
        presenter.write(f"Not logged in to {registry}\n")
    return 0


def search(options, presenter) -> int:
    from layerlab.engine.registry.search import DOCKER_HUB_INDEX, search as search_registry

    # The override exists so the Docker Hub path can be exercised against a local server.
    index_url = os.environ.get("LAYERLAB_SEARCH_INDEX", DOCKER_HUB_INDEX)
    _check_index_url(index_url)
    presenter.show(search_registry(options.term, limit=options.limit, no_trunc=options.no_trunc,
                                   index_url=index_url, root=_engine().root))
    return 0


def _check_index_url(index_url: str) -> None:
    import urllib.parse

    parts = urllib.parse.urlsplit(index_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidArgumentError(
            f"invalid LAYERLAB_SEARCH_INDEX {index_url!r}: expected an http:// or https:// URL such as "
            "https://index.docker.io, or unset it to search Docker Hub"
        )


def save(options, presenter) -> int:
    from layerlab.engine.transfer.archives import save as save_images

    engine = _engine()
    if options.output:
        _check_output_path(options.output)
        _save_to_path(engine, options, save_images)
        return 0
    if sys.stdout.isatty():
        raise InvalidArgumentError("refusing to write an archive to a terminal: use -o FILE or a redirect")
    save_images(engine, options.images, sys.stdout.buffer, format=options.format)
    sys.stdout.buffer.flush()
    return 0


def _save_to_path(engine, options, save_images) -> None:
    """Write the archive to `options.output`: into it when it is a device or pipe, else through a renamed file."""
    try:
        existing = os.stat(options.output)
    except FileNotFoundError:
        existing = None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        # Replacing /dev/null or a named pipe with a file would break the host, so write into it.
        with open(options.output, "wb") as target:
            save_images(engine, options.images, target, format=options.format)
        return

    # The archive is written beside the target and renamed over it, so a
    # failed save keeps an older file. A symlink keeps pointing at the file.
    destination = os.path.realpath(options.output)
    tmp_path = f"{destination}.tmp-{os.getpid()}"
    try:
        try:
            target = open(tmp_path, "wb")
        except OSError as error:
            raise InvalidArgumentError(f"cannot write {options.output}: {error.strerror}") from None
        with target:
            save_images(engine, options.images, target, format=options.format)
        os.rename(tmp_path, destination)
    finally:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)


def _check_output_path(output: str) -> None:
    """Reject a `save -o` target that is a directory or lies in a missing directory, naming it."""
    if os.path.isdir(output):
        raise InvalidArgumentError(
            f"cannot write {output}: it is a directory: give a file name, such as {os.path.join(output, 'images.tar')}"
        )
    directory = os.path.dirname(output) or "."
    if not os.path.isdir(directory):
        raise InvalidArgumentError(f"cannot write {output}: directory {directory} does not exist: create it first")


def load(options, presenter) -> int:
    import fcntl
    import tempfile

    from layerlab.engine.transfer.archives import load as load_images

    engine = _engine()
    progress = None if options.quiet else presenter.write
    if options.input:
        load_images(engine, options.input, progress=progress)
        return 0
    if sys.stdin is None or sys.stdin.isatty():
        raise InvalidArgumentError(
            "requested load from stdin, but stdin is empty: pass -i FILE or redirect an archive to standard input"
        )
    # Standard input is not seekable, and tar members are read by name, so spool it first.
    with tempfile.NamedTemporaryFile(dir=engine.store.tmp_dir, prefix="load-") as spool:
        # Store.remove_stale_tmp deletes a spool file only when no process holds this lock.
        fcntl.flock(spool.fileno(), fcntl.LOCK_EX)
        while chunk := sys.stdin.buffer.read(1 << 20):
            spool.write(chunk)
        spool.flush()
        if spool.tell() == 0:
            raise InvalidArgumentError(
                "requested load from stdin, but stdin is empty: pass -i FILE or redirect an archive to standard input"
            )
        load_images(engine, spool.name, progress=progress, display_name="standard input")
    return 0


HANDLERS = {
    "pull": pull,
    "push": push,
    "login": login,
    "logout": logout,
    "search": search,
    "save": save,
    "load": load,
}
