"""Which cells the Docker cell transformer takes, and the Python it turns them into."""

import pytest

from layerlab.kernel.cells import DockerCellTransformer
from layerlab.kernel.magics import has_tag, parse_dockerfile_arguments

BARE = DockerCellTransformer(bare_docker_lines=True)
MAGIC_ONLY = DockerCellTransformer(bare_docker_lines=False)


def lines_of(text):
    return text.splitlines(keepends=True)


def run_transformed(transformer, text):
    """Execute the transformed cell against a recorder; return the magic calls it makes."""
    calls = []

    class Shell:
        def run_cell_magic(self, name, line, body):
            calls.append((name, line, body))

        def run_line_magic(self, name, line):
            calls.append((name, line))

    exec("".join(transformer(lines_of(text))), {"get_ipython": Shell})
    return calls


def test_dockerfile_cell_keeps_body():
    body = ">>> x\n  indented\nIn [3]: y\nRUN <<EOF\n'''\"\\\nEOF\n"

    calls = run_transformed(MAGIC_ONLY, "%%dockerfile app/ -t demo\n" + body)

    assert calls == [("dockerfile", "app/ -t demo", body)]


def test_dockerfile_cell_after_blank_lines():
    calls = run_transformed(MAGIC_ONLY, "\n  \n%%dockerfile\nFROM busybox\n")

    assert calls == [("dockerfile", "", "FROM busybox\n")]


def test_bare_docker_lines_become_line_magics():
    cell = "# build it\ndocker build -t demo .\n\ndocker run --rm \\\n    demo echo hi\n"

    calls = run_transformed(BARE, cell)

    assert [name for name, *_ in calls] == ["docker", "docker"]
    assert calls[0][1] == "build -t demo ."
    assert calls[1][1].split() == ["run", "--rm", "demo", "echo", "hi"]


@pytest.mark.parametrize("cell", [
    "docker = 1\n",
    "docker is None\n",
    "docker.images()\n",
    "docker images\nprint(1)\n",
    "# only a comment\n",
    "dockerfile = 'x'\n",
    "%%dockerfiles\nFROM x\n",
])
def test_python_cells_left_alone(cell):
    assert BARE(lines_of(cell)) == lines_of(cell)


def test_bare_lines_need_the_kernel():
    assert MAGIC_ONLY(lines_of("docker images\n")) == lines_of("docker images\n")


@pytest.mark.parametrize("words, expected", [
    ([], ("Dockerfile", [])),
    (["app/"], ("app/", [])),
    (["-t", "demo"], ("Dockerfile", ["-t", "demo"])),
    (["sub/Dockerfile", "--no-cache", "-t", "demo"], ("sub/Dockerfile", ["--no-cache", "-t", "demo"])),
])
def test_dockerfile_arguments_split(words, expected):
    assert parse_dockerfile_arguments(words) == expected


@pytest.mark.parametrize("flags, expected", [
    (["-t", "x"], True),
    (["-tx"], True),
    (["--tag=x"], True),
    (["--tag", "x"], True),
    (["--no-cache"], False),
    (["--target", "build"], False),
])
def test_build_flags_tag_detected(flags, expected):
    assert has_tag(flags) is expected
