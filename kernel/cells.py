"""Take Docker cells before IPython's input transformers rewrite them.

IPython's cleanup transformers strip `>>> ` and `In [1]: ` prompts and
leading indentation before its cell-magic transformer runs, so a Dockerfile
with such lines would reach `%%dockerfile` changed. `DockerCellTransformer`
sits first in `input_transformers_cleanup` and turns a Docker cell into one
Python call that carries the cell text as a string literal, which the later
transformers leave alone. IPython still counts, stores (the raw cell goes
into history) and runs the cell, so execution counts and errors behave as
for any other cell.
"""

from __future__ import annotations

import keyword
import logging
import re

log = logging.getLogger(__name__)

DOCKERFILE_MAGIC = "%%dockerfile"

# Matches `docker images` and `docker --version`, but not Python such as `docker = 1`.
_DOCKER_LINE = re.compile(r"docker[ \t]+(-{0,2}[A-Za-z][\w-]*)")


class DockerCellTransformer:
    """A cleanup transformer for `%%dockerfile` cells and, optionally, bare `docker` cells."""

    # IPython's check_complete skips transformers with side effects, so a
    # terminal frontend still waits for the blank line that ends a cell magic.
    has_side_effects = True

    def __init__(self, bare_docker_lines: bool):
        self.bare_docker_lines = bare_docker_lines

    def __call__(self, lines: list[str]) -> list[str]:
        # IPython drops leading blank lines too, in a transformer after this one.
        start = 0
        while start < len(lines) and not lines[start].strip():
            start += 1
        cell = lines[start:]
        if not cell:
            return lines

        if is_dockerfile_cell(cell):
            return dockerfile_call(cell).splitlines(keepends=True)
        if self.bare_docker_lines:
            commands = docker_commands(cell)
            if commands is not None:
                return docker_calls(commands).splitlines(keepends=True)
        return lines


def install_transformer(shell, *, bare_docker_lines: bool) -> DockerCellTransformer:
    """Put a DockerCellTransformer first in `shell`'s cleanup transformers, replacing an earlier one."""
    transformers = shell.input_transformers_cleanup
    transformers[:] = [t for t in transformers if not isinstance(t, DockerCellTransformer)]

    transformer = DockerCellTransformer(bare_docker_lines)
    transformers.insert(0, transformer)
    log.debug("installed the Docker cell transformer (bare docker lines: %s)", bare_docker_lines)
    return transformer


def is_dockerfile_cell(lines: list[str]) -> bool:
    words = lines[0].split(maxsplit=1)
    return bool(words) and words[0] == DOCKERFILE_MAGIC and lines[0].startswith(DOCKERFILE_MAGIC)


def dockerfile_call(lines: list[str]) -> str:
    """Return the Python call that runs a `%%dockerfile` cell with its body as it is."""
    arguments = lines[0][len(DOCKERFILE_MAGIC):].strip()
    body = "".join(lines[1:])
    return f"get_ipython().run_cell_magic('dockerfile', {arguments!r}, {body!r})\n"


def docker_commands(lines: list[str]) -> list[str] | None:
    """Return the argument strings of a cell made only of `docker ...` lines, else None.

    Blank lines and `#` comments may sit between the commands, and a line
    ending in a backslash continues on the next one, as in a shell.
    """
    commands = []
    for line in _logical_lines(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue

        match = _DOCKER_LINE.match(stripped)
        if match is None or keyword.iskeyword(match.group(1)):
            return None
        commands.append(stripped[len("docker"):].strip())

    return commands or None


def docker_calls(commands: list[str]) -> str:
    # One statement per command: the first one that fails raises, so the
    # later ones do not run, as in a shell script with `set -e`.
    return "".join(f"get_ipython().run_line_magic('docker', {command!r})\n" for command in commands)


def _logical_lines(lines: list[str]) -> list[str]:
    joined = []
    current = ""
    for line in lines:
        text = line.rstrip("\r\n")
        if text.endswith("\\"):
            current += text[:-1] + " "
            continue
        joined.append(current + text)
        current = ""
    if current:
        joined.append(current)
    return joined
