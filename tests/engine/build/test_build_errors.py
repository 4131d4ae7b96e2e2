"""`layerlab build` failures: located messages without Python exception text, exit status 1, clean tmp/."""

import http.server
import os
import threading

import pytest


def build(cli, context, dockerfile):
    (context / "Dockerfile").write_text(dockerfile)
    return cli("build", "-t", "built", str(context))


def assert_plain(result):
    assert "Traceback" not in result.stderr
    assert "Errno" not in result.stderr
    assert "Error:" not in result.stderr


def test_dockerfile_path_is_directory(busybox, cli, context):
    result = cli("build", "-f", str(context), str(context))

    assert result.returncode == 1
    assert "is a directory, not a Dockerfile" in result.stderr
    assert f"-f {context}/Dockerfile" in result.stderr
    assert_plain(result)


def test_absolute_link_missing_in_context(busybox, cli, context, tmp_path):
    (tmp_path / "host.txt").write_text("host\n")
    os.symlink(str(tmp_path / "host.txt"), context / "abs-link")

    result = build(cli, context, "FROM busybox\nCOPY abs-link /x\n")

    assert result.returncode == 1
    assert "Dockerfile:2: COPY: source 'abs-link' is a symlink" in result.stderr
    assert_plain(result)


def test_chown_unknown_user(busybox, cli, context):
    (context / "a.txt").write_text("a\n")

    result = build(cli, context, "FROM busybox\nCOPY --chown=nosuchuser a.txt /a\n")

    assert result.returncode == 1
    assert ("Dockerfile:2: COPY: unable to find user nosuchuser: no matching entries in passwd file"
            in result.stderr)
    assert_plain(result)


def test_from_arg_without_value(busybox, cli, context):
    result = build(cli, context, "ARG X\nFROM $X\n")

    assert result.returncode == 1
    assert "Dockerfile:2: FROM:" in result.stderr
    assert "ARG X has no value" in result.stderr
    assert "--build-arg X=" in result.stderr
    assert_plain(result)


def test_run_on_scratch(busybox, cli, context):
    result = build(cli, context, "FROM scratch\nRUN echo\n")

    assert result.returncode == 1
    assert "Dockerfile:2: RUN:" in result.stderr
    assert "/bin/sh" in result.stderr
    assert "the image is empty" in result.stderr


def test_run_longer_than_arg_max(busybox, cli, context):
    lines = "".join(f"  && echo line{index} \\\n" for index in range(20000))

    result = build(cli, context, f"FROM busybox\nRUN true \\\n{lines}  && true\n")

    assert result.returncode == 1
    assert "Dockerfile:2: RUN: RUN command is" in result.stderr
    assert "(ARG_MAX" in result.stderr
    assert "Running in" not in result.stdout


def test_failing_run_exit_status(busybox, cli, context):
    result = build(cli, context, "FROM busybox\nRUN exit 7\n")

    assert result.returncode == 1
    assert "returned a non-zero code: 7" in result.stderr


def test_dockerfile_error_exit_status(busybox, cli, context):
    result = build(cli, context, "FROM busybox\nRUNN true\n")

    assert result.returncode == 1


def test_engine_error_exit_status(busybox, cli, context):
    result = cli("build", "--build-arg", "=x", str(context))

    assert result.returncode == 125


def test_stdin_without_context(busybox, cli, context):
    result = cli("build", "-t", "piped", "-", input="FROM busybox\nRUN echo piped > /p\nCMD cat /p\n")

    assert result.returncode == 0, result.stderr
    assert cli("run", "--rm", "piped").stdout == "piped\n"


def test_stdin_without_context_copy(busybox, cli):
    result = cli("build", "-", input="FROM busybox\nCOPY a.txt /a\n")

    assert result.returncode == 1
    assert "Dockerfile:2: COPY: source 'a.txt' not found" in result.stderr


def test_stdin_with_context(busybox, cli, context):
    (context / "a.txt").write_text("from context\n")

    result = cli("build", "-t", "piped", "-f", "-", str(context), input="FROM busybox\nCOPY a.txt /a\nCMD cat /a\n")

    assert result.returncode == 0, result.stderr
    assert cli("run", "--rm", "piped").stdout == "from context\n"


def test_stdin_with_other_file(busybox, cli, context):
    result = cli("build", "-f", "Dockerfile", "-", input="FROM busybox\n")

    assert result.returncode == 125
    assert "drop -f" in result.stderr


@pytest.fixture
def missing_url():
    """The URL of a file that a local HTTP server answers with 404."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/no-such-file"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("instruction", ["ADD {url} /x", "COPY --from=busybox /nothere /x"])
def test_failed_step_leaves_no_staging(busybox, cli, context, missing_url, instruction):
    result = build(cli, context, f"FROM busybox\n{instruction.format(url=missing_url)}\n")

    assert result.returncode == 1
    assert "Dockerfile:2:" in result.stderr
    assert [name for name in os.listdir(busybox / "tmp") if name.startswith(("sources-", "build-"))] == []
