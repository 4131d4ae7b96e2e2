"""The `%docker` and `%%dockerfile` magics.

Both run the engine's CLI in this process with a NotebookPresenter, so
output streams into the cell and views become widgets. A command that exits
with a non-zero status raises DockerCommandError, which fails the cell.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand

from layerlab.kernel.cells import install_transformer
from layerlab.kernel.commands import DockerCommandError, run_docker
from layerlab.kernel.presenter import NotebookPresenter

log = logging.getLogger(__name__)

DEFAULT_DOCKERFILE = "Dockerfile"


@magics_class
class DockerMagics(Magics):
    """`%docker ARGS` runs any engine command; `%%dockerfile [PATH] [build flags]` writes and builds."""

    # IPython would expand {var} and $var and turn `{{` into `{`, which breaks Go templates such as
    # -f '{{.Config.Cmd}}', so the line reaches the engine as written.
    @no_var_expand
    @line_magic
    def docker(self, line: str) -> None:
        """Run `docker ARGS` in the embedded engine, as a terminal would."""
        docker(shlex.split(line))

    @cell_magic
    def dockerfile(self, line: str, cell: str) -> None:
        """Write the cell to PATH (default ./Dockerfile) and, given `-t NAME`, build it.

        PATH may name a directory (or end in `/`) to write PATH/Dockerfile.
        The build context is the directory of the written file, as in
        `docker build -t NAME -f PATH DIR`.
        """
        path, build_flags = parse_dockerfile_arguments(shlex.split(line))
        written = write_dockerfile(path, cell)

        if not build_flags:
            return
        if not has_tag(build_flags):
            print(f"Wrote {written} but did not build it: add -t NAME to build "
                  f"(ignored flags: {shlex.join(build_flags)})", file=sys.stderr)
            return

        docker(["build", *build_flags, "-f", str(written), str(written.parent)])


def docker(argv: list[str]) -> None:
    """Run `docker ARGV`; raise DockerCommandError if it exits with a non-zero status."""
    status = run_docker(argv, NotebookPresenter())
    if status != 0:
        raise DockerCommandError(argv, status)


def parse_dockerfile_arguments(words: list[str]) -> tuple[str, list[str]]:
    """Split `%%dockerfile`'s arguments into the PATH (or the default) and the build flags."""
    if words and not words[0].startswith("-"):
        return words[0], words[1:]
    return DEFAULT_DOCKERFILE, words


def write_dockerfile(path: str, body: str) -> Path:
    """Write `body` to `path` (PATH/Dockerfile for a directory), creating parent directories."""
    target = Path(os.path.expanduser(path))
    if path.endswith("/") or target.is_dir():
        target = target / DEFAULT_DOCKERFILE

    target.parent.mkdir(parents=True, exist_ok=True)

    # Binary mode keeps the text as the cell has it: no newline translation.
    target.write_bytes(body.encode("utf-8"))
    log.debug("wrote %d characters to %s", len(body), target)
    return target


def has_tag(flags: list[str]) -> bool:
    """Tell whether build flags name a tag: `-t x`, `-tx`, `-t=x`, `--tag x` or `--tag=x`."""
    return any(flag.startswith("-t") or flag == "--tag" or flag.startswith("--tag=") for flag in flags)


def load_ipython_extension(ipython) -> None:
    """Register the magics, and keep `%%dockerfile` cells out of IPython's prompt stripping."""
    ipython.register_magics(DockerMagics)

    # The layerlab kernel installs its own transformer, which also takes
    # bare `docker` cells, so an existing one stays.
    if not _has_docker_transformer(ipython):
        install_transformer(ipython, bare_docker_lines=False)


def _has_docker_transformer(ipython) -> bool:
    from layerlab.kernel.cells import DockerCellTransformer

    return any(isinstance(t, DockerCellTransformer) for t in ipython.input_transformers_cleanup)
