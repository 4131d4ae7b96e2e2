"""The `layerlab` command line: Docker's table columns, exit codes and error output."""

import hashlib
import json
import os
import re
import subprocess
import sys

import pytest

def columns(header):
    """Split a table header on the runs of two or more spaces that separate Docker's columns."""
    return re.split(r" {2,}", header.strip())


def test_images_header(busybox, cli):
    header = cli("images").stdout.splitlines()[0]

    assert columns(header) == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]


def test_images_row(busybox, cli):
    row = columns(cli("images").stdout.splitlines()[1])

    assert row[:2] == ["busybox", "latest"]
    assert re.fullmatch(r"[0-9a-f]{12}", row[2])


def test_images_quiet(busybox, cli):
    quiet = cli("images", "-q").stdout

    assert re.fullmatch(r"[0-9a-f]{12}\n", quiet)


def test_images_no_trunc(busybox, cli):
    row = columns(cli("images", "--no-trunc").stdout.splitlines()[1])

    assert re.fullmatch(r"sha256:[0-9a-f]{64}", row[2])


def test_ps_header(busybox, cli):
    cli("run", "--name", "t", "busybox", "true")

    header = cli("ps", "-a").stdout.splitlines()[0]

    assert columns(header) == ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]


def test_ps_hides_exited(busybox, cli):
    cli("run", "--name", "t", "busybox", "true")

    lines = cli("ps").stdout.splitlines()

    assert len(lines) == 1


def test_ps_exited_status(busybox, cli):
    cli("run", "--name", "t", "busybox", "sh", "-c", "exit 4")

    row = cli("ps", "-a").stdout.splitlines()[1]

    assert "Exited (4)" in row
    # Docker wraps an argument that contains a space in single quotes.
    assert '"sh -c \'exit 4\'"' in row


def test_history_header(busybox, cli):
    header = cli("history", "busybox").stdout.splitlines()[0]

    assert columns(header) == ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]


def test_history_quiet(busybox, cli):
    lines = cli("history", "-q", "busybox").stdout.splitlines()

    assert lines[-1] == "<missing>"
    assert re.fullmatch(r"[0-9a-f]{12}", lines[0])


def test_usage_error(store_root, cli):
    result = cli("run")

    # Docker exits with 1 for a missing argument and with 125 for a bad flag.
    assert result.returncode == 1
    assert '"layerlab run" requires at least 1 argument' in result.stderr
    assert "See 'layerlab run --help'." in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_command(store_root, cli):
    result = cli("frobnicate")

    # Docker exits with 1 here, not with its usage status 125.
    assert result.returncode == 1
    assert result.stderr == "layerlab: 'frobnicate' is not a layerlab command.\nSee 'layerlab --help'\n"


def test_mistyped_command_suggests_nearest(store_root, cli):
    result = cli("--debug", "imagess")

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "layerlab: 'imagess' is not a layerlab command.",
        "Did you mean 'images'?",
        "See 'layerlab --help'",
    ]
    assert result.stdout == ""


def test_run_usage_optional_command(store_root, cli):
    result = cli("run", "--help")

    assert result.returncode == 0
    assert result.stdout.startswith("usage: layerlab run [OPTIONS] IMAGE [COMMAND] [ARG...]\n")


def test_help_exit_zero(store_root, cli):
    result = cli("--help")

    assert result.returncode == 0
    assert "build" in result.stdout


def test_version(store_root, cli):
    result = cli("version")

    assert result.stdout.startswith("layerlab version ")


@pytest.mark.parametrize("flag", ["--version", "-v"])
def test_version_flag_wins_over_command(store_root, cli, flag):
    alone = cli(flag)
    before_command = cli(flag, "images")

    assert alone.returncode == 0
    assert alone.stdout == cli("version").stdout
    assert before_command.stdout == alone.stdout


def test_inspect_missing(busybox, cli):
    result = cli("inspect", "nothere")

    assert result.returncode == 1
    assert "Error: No such object: nothere" in result.stderr
    assert json.loads(result.stdout) == []


def test_inspect_format(busybox, cli):
    result = cli("inspect", "--format", "{{json .Config.Cmd}}", "busybox")

    assert result.stdout == '["sh"]\n'


def test_inspect_image_id(busybox, cli):
    image_id = json.loads(cli("inspect", "busybox").stdout)[0]["Id"]

    blob = busybox / "blobs" / "sha256" / image_id.removeprefix("sha256:")

    assert image_id == "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()


def test_tag_then_images(busybox, cli):
    cli("tag", "busybox", "localhost:5000/box:v1")

    repositories = [columns(line)[:2] for line in cli("images").stdout.splitlines()[1:]]

    assert ["localhost:5000/box", "v1"] in repositories


def test_fsck_fresh_store(busybox, cli):
    result = cli("fsck")

    assert result.returncode == 0
    assert result.stdout == "store is consistent\n"


def test_fsck_corrupt_blob(busybox, cli):
    image_id = json.loads(cli("inspect", "busybox").stdout)[0]["Id"]
    blob = busybox / "blobs" / "sha256" / image_id.removeprefix("sha256:")
    blob.write_bytes(blob.read_bytes() + b" ")

    result = cli("fsck")

    assert result.returncode == 1
    assert f"blob {image_id} does not match its digest" in result.stdout


@pytest.mark.parametrize("flags", [["-l", "info"], ["--log-level", "error"], ["--config", "/nonexistent-config"]])
def test_global_flag_values_are_not_commands(store_root, cli, flags):
    result = cli(*flags, "ps")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("CONTAINER ID")


@pytest.mark.parametrize("flags, named", [(["-H", "unix:///run/docker.sock"], "-H/--host"),
                                          (["--context", "remote"], "-c/--context"),
                                          (["--tlsverify"], "--tlsverify")])
def test_daemon_flags_rejected(store_root, cli, flags, named):
    result = cli(*flags, "ps")

    assert result.returncode == 125
    assert result.stderr.startswith(f"layerlab: {named} is not supported: layerlab runs without a daemon")


def test_config_flag_names_logins_folder(store_root, cli, tmp_path):
    folder = tmp_path / "client"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")

    result = cli("--config", folder, "logout", "127.0.0.1:5999")

    assert result.returncode == 1
    assert str(folder / "config.json") in result.stderr


def test_closed_stdout_is_no_error(store_root):
    env = dict(os.environ, LAYERLAB_ROOT=str(store_root))

    result = subprocess.run([sys.executable, "-m", "layerlab", "images"], stdout=subprocess.DEVNULL, env=env,
                            stderr=subprocess.PIPE, text=True, close_fds=True, preexec_fn=lambda: os.close(1))

    assert result.returncode == 0
    assert result.stderr == ""


def test_reader_leaving_early_ends_quietly(busybox, store_root):
    env = dict(os.environ, LAYERLAB_ROOT=str(store_root))
    reader_gone = subprocess.Popen([sys.executable, "-m", "layerlab", "history", "--no-trunc", "busybox"], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader_gone.stdout.close()

    error = reader_gone.stderr.read().decode()
    status = reader_gone.wait(timeout=60)

    assert error == ""
    assert status in (0, 141)
