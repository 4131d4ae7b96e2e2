"""Dockerfile builds on busybox: errors, image config, CMD and ENTRYPOINT, history."""

import json
import os
import subprocess
import sys

import pytest

from layerlab.engine import bootstrap
from layerlab.engine.api import Engine


def build(cli, context, dockerfile, tag="built"):
    (context / "Dockerfile").write_text(dockerfile)
    return cli("build", "-t", tag, str(context))


def config_of(cli, name):
    return json.loads(cli("inspect", name).stdout)[0]["Config"]


def test_unknown_keyword(busybox, cli, context):
    result = build(cli, context, "FROM busybox\nENV A=1\nRUNN echo hi\n")

    assert result.returncode != 0
    assert "Dockerfile:3" in result.stderr
    assert "did you mean RUN?" in result.stderr
    assert "Traceback" not in result.stderr


def test_failing_run(busybox, cli, context):
    result = build(cli, context, "FROM busybox\nRUN exit 7\n")

    assert result.returncode != 0
    assert "returned a non-zero code: 7" in result.stderr
    assert "Traceback" not in result.stderr


def test_from_missing_image(store_root, cli, context):
    result = build(cli, context, "FROM nothere\n")

    assert result.returncode != 0
    assert "nothere" in result.stderr
    assert "layerlab bootstrap" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_dockerfile(busybox, cli, context):
    result = cli("build", str(context))

    assert result.returncode != 0
    assert "Dockerfile" in result.stderr
    assert "Traceback" not in result.stderr


def test_dockerignore_excludes(busybox, cli, context):
    (context / "keep.txt").write_text("keep\n")
    (context / "secret.txt").write_text("secret\n")
    (context / ".dockerignore").write_text("secret.txt\n")
    build(cli, context, "FROM busybox\nCOPY . /app/\n")

    listing = cli("run", "--rm", "built", "ls", "-a", "/app")

    assert "keep.txt" in listing.stdout.split()
    assert "secret.txt" not in listing.stdout.split()


def test_copy_ignored_source(busybox, cli, context):
    (context / "secret.txt").write_text("secret\n")
    (context / ".dockerignore").write_text("secret.txt\n")

    result = build(cli, context, "FROM busybox\nCOPY secret.txt /\n")

    assert result.returncode != 0
    assert "secret.txt" in result.stderr


METADATA = """\
FROM busybox
ARG VERSION=1.0
ENV APP=demo LEVEL=$VERSION
LABEL maintainer="a@example.com" version="$VERSION"
EXPOSE 80 53/udp
WORKDIR /srv
WORKDIR app
USER nobody
ENTRYPOINT ["echo"]
CMD ["hello"]
"""


@pytest.fixture
def metadata_image(busybox, cli, context):
    result = build(cli, context, METADATA)
    assert result.returncode == 0, result.stderr
    return config_of(cli, "built")


def test_config_env(metadata_image):
    assert metadata_image["Env"] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "APP=demo", "LEVEL=1.0",
    ]


def test_config_labels(metadata_image):
    assert metadata_image["Labels"]["maintainer"] == "a@example.com"
    assert metadata_image["Labels"]["version"] == "1.0"


def test_config_exposed_ports(metadata_image):
    assert metadata_image["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}


def test_config_working_dir(metadata_image):
    assert metadata_image["WorkingDir"] == "/srv/app"


def test_config_user(metadata_image):
    assert metadata_image["User"] == "nobody"


def test_config_entrypoint_cmd(metadata_image):
    assert metadata_image["Entrypoint"] == ["echo"]
    assert metadata_image["Cmd"] == ["hello"]


def test_config_arg_not_in_env(metadata_image):
    assert not any(entry.startswith("VERSION=") for entry in metadata_image["Env"])


def test_history_rows(metadata_image, cli):
    history = cli("history", "--no-trunc", "built").stdout.splitlines()

    assert history[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    # One row per instruction after FROM, then busybox's two rows.
    assert len(history) == 1 + 9 + 2


def test_history_nop_rows(metadata_image, cli):
    text = cli("history", "--no-trunc", "built").stdout

    assert '/bin/sh -c #(nop)  CMD ["hello"]' in text
    assert '/bin/sh -c #(nop)  ENTRYPOINT ["echo"]' in text
    assert "/bin/sh -c #(nop)  USER nobody" in text
    assert "/bin/sh -c #(nop) WORKDIR /srv/app" in text
    assert "/bin/sh -c #(nop)  EXPOSE 80 53/udp" in text
    assert "/bin/sh -c #(nop)  ARG VERSION=1.0" in text


def test_history_base_missing(metadata_image, cli):
    rows = cli("history", "built").stdout.splitlines()[1:]

    assert rows[-1].startswith("<missing>")
    assert not any(row.startswith("<missing>") for row in rows[:-1])


def test_history_run_row(busybox, cli, context):
    build(cli, context, "FROM busybox\nRUN echo hi > /hi\n")

    rows = cli("history", "--no-trunc", "built").stdout.splitlines()

    assert "/bin/sh -c echo hi > /hi" in rows[1]
    assert "#(nop)" not in rows[1]


# Dockerfile lines, `run` arguments, expected output: the Dockerfile reference's table.
COMMANDS = [
    ('ENTRYPOINT ["echo", "e"]\nCMD ["c"]', [], "e c"),
    ('ENTRYPOINT ["echo", "e"]\nCMD ["c"]', ["x"], "e x"),
    ('ENTRYPOINT ["echo", "e"]\nCMD echo c', [], "e /bin/sh -c echo c"),
    ("ENTRYPOINT echo e\nCMD [\"c\"]", [], "e"),
    ("ENTRYPOINT echo e\nCMD echo c", ["x"], "e"),
    ('CMD ["echo", "c"]', [], "c"),
    ("CMD echo $HOME c", [], "/root c"),
    ('CMD ["echo", "c"]', ["echo", "x"], "x"),
    ('ENTRYPOINT ["echo", "e"]', [], "e"),
]


@pytest.mark.parametrize("lines, args, expected", COMMANDS)
def test_cmd_entrypoint_table(busybox, cli, context, lines, args, expected):
    build(cli, context, f"FROM busybox\n{lines}\n")

    run = cli("run", "--rm", "built", *args)

    assert run.stdout == expected + "\n"


def test_entrypoint_flag_clears_cmd(busybox, cli, context):
    build(cli, context, 'FROM busybox\nENTRYPOINT ["echo", "e"]\nCMD ["c"]\n')

    run = cli("run", "--rm", "--entrypoint", "echo", "built")

    assert run.stdout == "\n"


def test_entrypoint_flag_with_args(busybox, cli, context):
    build(cli, context, 'FROM busybox\nENTRYPOINT ["echo", "e"]\nCMD ["c"]\n')

    run = cli("run", "--rm", "--entrypoint", "echo", "built", "x")

    assert run.stdout == "x\n"


def test_entrypoint_resets_base_cmd(busybox, cli, context):
    build(cli, context, 'FROM busybox\nENTRYPOINT ["echo", "e"]\n')

    assert config_of(cli, "built")["Cmd"] is None


def test_run_uses_workdir_and_user(busybox, cli, context):
    build(cli, context, "FROM busybox\nWORKDIR /w\nUSER nobody\nCMD id -u; pwd\n")

    run = cli("run", "--rm", "built")

    assert run.stdout == "65534\n/w\n"


def test_run_sees_env(busybox, cli, context):
    build(cli, context, "FROM busybox\nENV A=1\nRUN echo $A > /a\nCMD cat /a\n")

    run = cli("run", "--rm", "built")

    assert run.stdout == "1\n"


def test_build_quiet(busybox, cli, context):
    (context / "Dockerfile").write_text("FROM busybox\nENV A=1\n")

    result = cli("build", "-q", str(context))

    assert result.stdout.startswith("sha256:")
    assert len(result.stdout.strip()) == len("sha256:") + 64


@pytest.fixture(scope="session")
def figlet_store(tmp_path_factory, debian_rootfs):
    """A debian:bookworm store, shared by the session, with a figlet image built once."""
    root = tmp_path_factory.mktemp("debian-store")
    engine = Engine(str(root))
    image = bootstrap._import_rootfs(engine, debian_rootfs["path"], debian_rootfs)
    engine.images.tag(image, bootstrap.Reference.parse("debian:bookworm"))
    context = tmp_path_factory.mktemp("figlet-context")
    (context / "Dockerfile").write_text(
        "FROM debian:bookworm\nRUN apt-get update && apt-get install -y --no-install-recommends figlet\n"
        'ENTRYPOINT ["figlet"]\nCMD ["hello"]\n'
    )
    env = dict(os.environ, LAYERLAB_ROOT=str(root))
    first = subprocess.run([sys.executable, "-m", "layerlab", "build", "-t", "figlet", str(context)],
                           env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr
    return root, context, env


def run_in(store, *args):
    root, context, env = store
    return subprocess.run([sys.executable, "-m", "layerlab", *args], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.network
def test_figlet_runs(figlet_store):
    run = run_in(figlet_store, "run", "--rm", "figlet", "hi")

    assert run.returncode == 0
    assert "|_| |_|_|" in run.stdout


@pytest.mark.network
def test_figlet_rebuild_cached(figlet_store):
    root, context, env = figlet_store

    rebuild = run_in(figlet_store, "build", "-t", "figlet", str(context))

    assert rebuild.returncode == 0
    assert rebuild.stdout.count(" ---> Using cache") == 3
    assert "Running in" not in rebuild.stdout


@pytest.mark.network
def test_build_bridge_reaches_archive(figlet_store, tmp_path):
    root, _, env = figlet_store
    (tmp_path / "Dockerfile").write_text("FROM debian:bookworm\nRUN apt-get update\n")

    result = subprocess.run([sys.executable, "-m", "layerlab", "build", "--network", "bridge", "--no-cache",
                             "-t", "apt-bridge", str(tmp_path)], env=env, capture_output=True, text=True, timeout=900)
    subprocess.run([sys.executable, "-m", "layerlab", "network", "prune", "-f"], env=env, capture_output=True,
                   timeout=60, check=False)

    assert result.returncode == 0, result.stderr
    assert "Reading package lists" in result.stdout
