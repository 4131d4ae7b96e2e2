"""cp, export, import, rename, pause, stats, prune, df, commit --change, filters, --format, create, attach,
and exec -t and -d through the CLI.

Each test copies a store where `layerlab bootstrap busybox` ran once, runs
containers with `--network none` and removes the running ones at the end.
"""

import io
import json
import os
import pty
import re
import shutil
import subprocess
import sys
import tarfile
import time

import pytest

from layerlab.engine.formatting import Template, format_rows
from tests.terminal import read_until_closed



@pytest.fixture(scope="session")
def busybox_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("busybox-commands")
    env = dict(os.environ, LAYERLAB_ROOT=str(root))
    subprocess.run([sys.executable, "-m", "layerlab", "bootstrap", "busybox"], env=env, check=True,
                   capture_output=True, timeout=300)
    return root


@pytest.fixture
def busybox(store_root, busybox_template, cli):
    shutil.copytree(busybox_template, store_root, dirs_exist_ok=True, symlinks=True)
    yield store_root
    running = cli("ps", "-q", "--no-trunc").stdout.split()
    if running:
        cli("rm", "-f", *running)


def run_stopped(cli, name, script, status=0):
    result = cli("run", "--network", "none", "--name", name, "busybox", "sh", "-c", script)
    assert result.returncode == status, result.stderr
    return result


def run_detached(cli, name, script="sleep 300"):
    result = cli("run", "-d", "--network", "none", "--name", name, "busybox", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# cp


def test_cp_directory_out_of_stopped(busybox, cli, tmp_path):
    run_stopped(cli, "t", "mkdir -p /d/sub && echo hi > /d/f && echo x > /d/sub/g && chown 5:6 /d/f")

    result = cli("cp", "t:/d", tmp_path)

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d" / "f").read_text() == "hi\n"
    assert (tmp_path / "d" / "sub" / "g").read_text() == "x\n"
    assert os.stat(tmp_path / "d" / "f").st_uid == os.getuid()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving the copy to other host ids (chown) needs root")
def test_cp_archive_keeps_owner(busybox, cli, tmp_path):
    run_stopped(cli, "t", "echo hi > /f && chown 5:6 /f")

    cli("cp", "-a", "t:/f", tmp_path / "copy")

    st = os.stat(tmp_path / "copy")
    assert (st.st_uid, st.st_gid) == (5, 6)


def test_cp_contents_with_dot_suffix(busybox, cli, tmp_path):
    run_stopped(cli, "t", "mkdir /d && echo 1 > /d/a")
    (tmp_path / "dest").mkdir()

    cli("cp", "t:/d/.", tmp_path / "dest")

    assert (tmp_path / "dest" / "a").read_text() == "1\n"


def test_cp_into_stopped(busybox, cli, tmp_path):
    run_stopped(cli, "t", "mkdir /target")
    source = tmp_path / "hostfile"
    source.write_text("from host\n")

    into_dir = cli("cp", source, "t:/target")
    renamed = cli("cp", source, "t:/renamed")
    diff = cli("diff", "t")

    assert into_dir.returncode == 0, into_dir.stderr
    assert renamed.returncode == 0, renamed.stderr
    assert "A /target/hostfile" in diff.stdout
    assert "A /renamed" in diff.stdout


def test_cp_into_stopped_is_owned_by_root(busybox, cli, tmp_path):
    run_stopped(cli, "t", "true")
    source = tmp_path / "hostfile"
    source.write_text("x")
    if os.geteuid() == 0:
        os.chown(source, 1234, 1234)
    cli("cp", source, "t:/f")
    cli("commit", "t", "img")

    owner = cli("run", "--rm", "--network", "none", "img", "stat", "-c", "%u:%g", "/f")

    assert owner.stdout == "0:0\n"


def test_cp_running_both_ways(busybox, cli, tmp_path):
    run_detached(cli, "r", "echo live > /live; sleep 300")
    source = tmp_path / "in"
    source.write_text("inside\n")

    out = cli("cp", "r:/live", tmp_path / "out")
    into = cli("cp", source, "r:/tmp/")
    seen = cli("exec", "r", "cat", "/tmp/in")

    assert out.returncode == 0, out.stderr
    assert (tmp_path / "out").read_text() == "live\n"
    assert into.returncode == 0, into.stderr
    assert seen.stdout == "inside\n"


def test_cp_tar_stream_both_ways(busybox, cli, tmp_path):
    run_stopped(cli, "t", "mkdir /d && echo 1 > /d/a")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("streamed")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))

    into = subprocess.run([sys.executable, "-m", "layerlab", "cp", "-", "t:/d"], input=buffer.getvalue(),
                          capture_output=True, env=dict(os.environ, LAYERLAB_ROOT=str(busybox)))
    out = subprocess.run([sys.executable, "-m", "layerlab", "cp", "t:/d", "-"], capture_output=True,
                         env=dict(os.environ, LAYERLAB_ROOT=str(busybox)))

    assert into.returncode == 0, into.stderr
    names = tarfile.open(fileobj=io.BytesIO(out.stdout)).getnames()
    assert names == ["d", "d/a", "d/streamed"]


def test_cp_symlink_stays_inside_root(busybox, cli, tmp_path):
    run_stopped(cli, "t", "ln -s ../../../../../../etc /escape")
    source = tmp_path / "marker"
    source.write_text("x")

    cli("cp", source, "t:/escape/")
    diff = cli("diff", "t")

    assert not os.path.exists("/etc/marker")
    assert "A /etc/marker" in diff.stdout


def test_cp_missing_source(busybox, cli, tmp_path):
    run_stopped(cli, "t", "true")

    result = cli("cp", "t:/nope", tmp_path)

    assert result.returncode != 0
    assert "No such container:path: t:/nope" in result.stderr


# export and import


def test_export_then_import(busybox, cli, tmp_path):
    run_stopped(cli, "t", "echo exported > /marker")
    archive = tmp_path / "t.tar"

    export = cli("export", "t", "-o", archive)
    imported = cli("import", "-c", 'CMD ["cat", "/marker"]', "-c", "ENV A=1", archive, "flat:1")
    run = cli("run", "--rm", "--network", "none", "flat:1")
    history = cli("history", "--format", "{{.CreatedBy}}|{{.Comment}}", "flat:1")
    config = json.loads(cli("inspect", "-f", "{{json .Config}}", "flat:1").stdout)

    assert export.returncode == 0, export.stderr
    assert "marker" in tarfile.open(archive).getnames()
    assert imported.stdout.startswith("sha256:")
    assert run.stdout == "exported\n"
    assert history.stdout == "|Imported from -\n"
    assert config["Env"] == ["A=1"]


def test_import_from_stdin_with_message(busybox, cli, tmp_path):
    run_stopped(cli, "t", "true")
    cli("export", "t", "-o", tmp_path / "t.tar")

    imported = subprocess.run(
        [sys.executable, "-m", "layerlab", "import", "-m", "note", "-", "fromstdin"],
        input=(tmp_path / "t.tar").read_bytes(), capture_output=True,
        env=dict(os.environ, LAYERLAB_ROOT=str(busybox)))
    comment = cli("history", "--format", "{{.Comment}}", "fromstdin")

    assert imported.returncode == 0, imported.stderr
    assert comment.stdout == "note\n"


def test_import_rejects_non_tar(busybox, cli, tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a tar" * 100)

    result = cli("import", junk)

    assert result.returncode == 1
    assert "not a tar archive" in result.stderr


def test_export_running_skips_proc(busybox, cli, tmp_path):
    run_detached(cli, "r")

    cli("export", "r", "-o", tmp_path / "r.tar")
    names = tarfile.open(tmp_path / "r.tar").getnames()

    assert "proc" in names
    assert not [name for name in names if name.startswith("proc/")]


# rename, pause, stats


def test_rename(busybox, cli):
    run_stopped(cli, "old", "true")
    run_stopped(cli, "other", "true")

    renamed = cli("rename", "old", "new")
    taken = cli("rename", "new", "other")
    names = cli("ps", "-a", "--format", "{{.Names}}").stdout.split()

    assert renamed.returncode == 0
    assert sorted(names) == ["new", "other"]
    assert taken.returncode != 0
    assert 'The container name "/other" is already in use' in taken.stderr


def test_rename_running_survives_exit(busybox, cli):
    run_detached(cli, "r", "sleep 1")

    cli("rename", "r", "renamed")
    cli("wait", "renamed")

    assert cli("ps", "-a", "--format", "{{.Names}}").stdout == "renamed\n"


def test_pause_unpause(busybox, cli):
    run_detached(cli, "r")

    paused = cli("pause", "r")
    status = cli("ps", "--format", "{{.Status}}").stdout
    state = cli("inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "r").stdout
    filtered = cli("ps", "--filter", "status=paused", "--format", "{{.Names}}").stdout
    again = cli("pause", "r")
    unpaused = cli("unpause", "r")
    after = cli("ps", "--format", "{{.Status}}").stdout
    alive = cli("exec", "r", "true")

    assert paused.stdout == "r\n"
    assert status.startswith("Up ")
    assert status.endswith("(Paused)\n")
    assert state == "paused true\n"
    assert filtered == "r\n"
    assert again.returncode == 1
    assert "already paused" in again.stderr
    assert unpaused.stdout == "r\n"
    assert "Paused" not in after
    assert alive.returncode == 0


def test_rm_force_paused(busybox, cli):
    run_detached(cli, "r")
    cli("pause", "r")

    removed = cli("rm", "-f", "r", timeout=30)

    assert removed.returncode == 0
    assert cli("ps", "-aq").stdout == ""


def test_stats_no_stream(busybox, cli):
    run_detached(cli, "r")

    table = cli("stats", "--no-stream")
    formatted = cli("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}")

    header = table.stdout.splitlines()[0].split()
    assert header == ["CONTAINER", "ID", "NAME", "CPU", "%", "MEM", "USAGE", "/", "LIMIT", "MEM", "%", "NET", "I/O",
                      "BLOCK", "I/O", "PIDS"]
    assert " r " in table.stdout
    assert formatted.stdout == "r 1\n"


# prune and df


def test_container_prune(busybox, cli):
    run_stopped(cli, "a", "echo data > /file")
    container_id = cli("ps", "-aq", "--no-trunc").stdout.strip()
    run_detached(cli, "r")

    pruned = cli("container", "prune", "-f")

    assert pruned.stdout.startswith(f"Deleted Containers:\n{container_id}\n\nTotal reclaimed space: ")
    assert cli("ps", "-a", "--format", "{{.Names}}").stdout == "r\n"


def test_container_prune_declined(busybox, cli):
    run_stopped(cli, "a", "true")

    declined = cli("container", "prune", input="n\n")

    assert "Are you sure you want to continue? [y/N]" in declined.stdout
    assert cli("ps", "-aq").stdout != ""


def test_image_prune_dangling_and_all(busybox, cli):
    run_stopped(cli, "a", "echo 1 > /x")
    cli("commit", "a", "keep")
    cli("commit", "a")
    cli("rm", "a")

    dangling = cli("image", "prune", "-f")
    everything = cli("image", "prune", "-a", "-f")

    assert dangling.stdout.startswith("Deleted Images:\ndeleted: sha256:")
    assert "untagged" not in dangling.stdout
    assert "untagged: keep:latest\n" in everything.stdout
    assert "untagged: busybox:latest\n" in everything.stdout
    assert cli("images", "-q").stdout == ""


def test_system_prune_and_df(busybox, cli):
    run_stopped(cli, "a", "echo 1 > /x")

    df = cli("system", "df")
    pruned = cli("system", "prune", "-f")
    after = cli("system", "df")

    assert df.stdout.splitlines()[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert df.stdout.splitlines()[2].split()[:3] == ["Containers", "1", "0"]
    assert pruned.stdout.startswith("Deleted Containers:\n")
    assert pruned.stdout.rstrip().splitlines()[-1].startswith("Total reclaimed space: ")
    assert after.stdout.splitlines()[2].split()[:3] == ["Containers", "0", "0"]
    assert cli("images", "-q").stdout != ""


def test_builder_prune_output(busybox, cli):
    pruned = cli("builder", "prune", "-f")

    assert pruned.stdout == "Total reclaimed space: 0B\n"


# commit --change


def test_commit_changes(busybox, cli):
    run_stopped(cli, "t", "true")
    changes = ["ENV A=1", "ENV B=$A C=$B", "LABEL k=v", "EXPOSE 80 53/udp", "USER nobody", "WORKDIR /srv", "VOLUME /data",
               "STOPSIGNAL SIGINT", "ONBUILD RUN echo hi", 'ENTRYPOINT ["echo"]', "CMD hello"]
    args = [arg for change in changes for arg in ("-c", change)]

    commit = cli("commit", "-m", "msg", "-a", "me", "-p", *args, "t", "changed")
    config = json.loads(cli("inspect", "-f", "{{json .Config}}", "changed").stdout)
    author = cli("inspect", "-f", "{{.Author}} {{.Comment}}", "changed").stdout

    assert commit.returncode == 0, commit.stderr
    assert config["Env"][1:] == ["A=1", "B=1", "C="]
    assert config["Labels"]["k"] == "v"
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert config["User"] == "nobody"
    assert config["WorkingDir"] == "/srv"
    assert config["Volumes"] == {"/data": {}}
    assert config["StopSignal"] == "SIGINT"
    assert config["OnBuild"] == ["RUN echo hi"]
    assert config["Entrypoint"] == ["echo"]
    assert config["Cmd"] == ["/bin/sh", "-c", "hello"]
    assert author == "me msg\n"


def test_commit_rejects_unknown_change(busybox, cli):
    run_stopped(cli, "t", "true")

    result = cli("commit", "-c", "RUN true", "t", "x")

    assert result.returncode == 1
    assert "'RUN' is not a valid change command" in result.stderr


def test_commit_running_with_pause(busybox, cli):
    run_detached(cli, "r", "echo v > /v; sleep 300")

    commit = cli("commit", "r", "fromrunning")
    status = cli("ps", "--format", "{{.Status}}").stdout
    run = cli("run", "--rm", "--network", "none", "fromrunning", "cat", "/v")

    assert commit.returncode == 0, commit.stderr
    assert "Paused" not in status
    assert run.stdout == "v\n"


# filters and formats


def test_ps_filters(busybox, cli):
    run_stopped(cli, "ok", "true")
    run_stopped(cli, "bad", "exit 3", status=3)
    run_detached(cli, "up")

    def names(*args):
        return sorted(cli("ps", "-a", *args, "--format", "{{.Names}}").stdout.split())

    assert names("--filter", "status=exited") == ["bad", "ok"]
    assert names("--filter", "status=running") == ["up"]
    assert names("--filter", "exited=3") == ["bad"]
    assert names("--filter", "name=^(ok|up)$") == ["ok", "up"]
    assert names("--filter", "name=^(ok|up)$", "--filter", "status=exited") == ["ok"]
    assert names("--filter", "ancestor=busybox") == ["bad", "ok", "up"]
    assert names("--filter", "ancestor=nothing") == []
    ok_id = cli("ps", "-aq", "--filter", "name=ok").stdout.strip()
    assert names("--filter", f"id={ok_id[:6]}") == ["ok"]


def test_ps_label_filter(busybox, cli):
    run_stopped(cli, "t", "true")
    cli("commit", "-c", "LABEL tier=web", "t", "labelled")
    cli("run", "--network", "none", "--name", "l", "labelled", "true")

    matching = cli("ps", "-a", "--filter", "label=tier=web", "--format", "{{.Names}} {{.Labels}}").stdout
    by_key = cli("ps", "-a", "--filter", "label=tier", "--format", "{{.Names}}").stdout
    none = cli("ps", "-a", "--filter", "label=tier=db", "-q").stdout

    assert matching.startswith("l ")
    assert "tier=web" in matching
    assert by_key == "l\n"
    assert none == ""


def test_ps_last_size_and_unknown_filter(busybox, cli):
    run_stopped(cli, "first", "true")
    run_stopped(cli, "second", "echo 12345 > /f")

    last = cli("ps", "-n", "1", "--format", "{{.Names}}").stdout
    sized = cli("ps", "-a", "-s")
    bad = cli("ps", "--filter", "colour=red")

    assert last == "second\n"
    assert sized.stdout.splitlines()[0].split()[-1] == "SIZE"
    assert "(virtual " in sized.stdout
    assert bad.returncode == 1
    assert "invalid filter 'colour'" in bad.stderr


def test_ps_table_format(busybox, cli):
    container_id = run_detached(cli, "r")

    table = cli("ps", "--format", r"table {{.ID}}\t{{.Names}}\t{{.Image}}").stdout
    plain = cli("ps", "--no-trunc", "--format", "{{.ID}} {{.Command}} {{.State}}").stdout

    assert table.splitlines() == ["CONTAINER ID   NAMES     IMAGE", f"{container_id[:12]}   r         busybox"]
    assert plain == f'{container_id} "sh -c \'sleep 300\'" running\n'


def test_rm_all_by_ids(busybox, cli):
    run_stopped(cli, "a", "true")
    run_stopped(cli, "b", "true")

    ids = cli("ps", "-aq").stdout.split()
    removed = cli("rm", *ids)

    assert len(ids) == 2
    assert removed.stdout.split() == ids
    assert cli("ps", "-aq").stdout == ""


def test_images_filters_and_format(busybox, cli):
    run_stopped(cli, "t", "true")
    cli("commit", "-c", "LABEL k=v", "t", "app:1")
    cli("commit", "t")

    def listing(*args):
        return cli("images", *args, "--format", "{{.Repository}}:{{.Tag}}").stdout.split()

    assert sorted(listing()) == ["<none>:<none>", "app:1", "busybox:latest"]
    assert listing("--filter", "dangling=true") == ["<none>:<none>"]
    assert sorted(listing("--filter", "dangling=false")) == ["app:1", "busybox:latest"]
    assert listing("--filter", "reference=app") == ["app:1"]
    assert listing("--filter", "reference=busy*:latest") == ["busybox:latest"]
    assert listing("--filter", "label=k=v") == ["app:1"]
    table = cli("images", "--format", r"table {{.Repository}}\t{{.Tag}}", "app").stdout
    assert table.splitlines() == ["REPOSITORY   TAG", "app          1"]


def test_history_format(busybox, cli):
    run_stopped(cli, "t", "true")
    cli("commit", "-m", "note", "t", "app")

    rows = cli("history", "--format", "{{.ID}}|{{.Comment}}", "app").stdout.splitlines()
    table = cli("history", "--format", r"table {{.ID}}\t{{.Size}}", "app").stdout.splitlines()

    assert rows[0].endswith("|note")
    assert table[0].split() == ["IMAGE", "SIZE"]


def test_inspect_templates(busybox, cli):
    run_stopped(cli, "t", "exit 4", status=4)
    cli("commit", "-c", "LABEL k=v", "-c", "ENV X=1", "t", "app")

    exit_code = cli("inspect", "-f", "{{.State.ExitCode}}", "t").stdout
    label = cli("inspect", "-f", '{{index .Config.Labels "k"}}', "app").stdout
    env = cli("inspect", "-f", "{{range .Config.Env}}{{.}};{{end}}", "app").stdout
    condition = cli("inspect", "-f", "{{if .State.Running}}up{{else}}down{{end}}", "t").stdout
    bad = cli("inspect", "-f", "{{.Nope}}", "t")

    assert exit_code == "4\n"
    assert label == "v\n"
    assert env.endswith("X=1;\n")
    assert condition == "down\n"
    assert bad.returncode == 1
    assert bad.stderr.startswith("template parsing error: ")
    assert "can't evaluate field Nope" in bad.stderr


@pytest.mark.parametrize("template, message", [
    ("{{.Nope", "template: :1: unclosed action"),
    ("{{.Id}", "template: :1: bad character U+007D '}'"),
    ("{{if .Id}}x", "template: :1: unexpected EOF"),
    ("{{end}}", "template: :1: unexpected {{end}}"),
    ("{{nofunc .Id}}", 'template: :1: function "nofunc" not defined'),
    ("x\n{{.Id", "template: :2: unclosed action"),
])
def test_inspect_rejects_malformed_template(busybox, cli, template, message):
    result = cli("inspect", "-f", template, "busybox")

    assert result.returncode == 64
    assert result.stderr == f"template parsing error: {message}\n"
    assert result.stdout == ""


# the template renderer on its own


@pytest.mark.parametrize("template, expected", [
    ("{{.A}}", "1"),
    ("{{.M}}", "map[a:x b:y]"),
    ("{{.L}}", "[p q]"),
    ("{{json .M}}", '{"b":"y","a":"x"}'),
    ("{{json .S}}", '"\\u003ctag\\u003e"'),
    ("{{join .L \",\"}}", "p,q"),
    ("{{.S | upper}}", "<TAG>"),
    ("{{range $x := .L}}{{end}}", None),
    ("{{- .A -}} \n x", "1x"),
    ("{{with .M}}{{.a}}{{end}}", "x"),
    ("{{len .L}}", "2"),
    ("{{.Missing}}", None),
    ("{{index .M \"zz\"}}", "<no value>"),
])
def test_template_renderer(template, expected):
    data = {"A": 1, "M": {"b": "y", "a": "x"}, "L": ["p", "q"], "S": "<tag>"}

    if expected is None:
        with pytest.raises(Exception):
            Template(template).render(data)
    else:
        assert Template(template).render(data) == expected


def test_format_rows_table_alignment():
    rows = [{"ID": "abc", "Names": "long-name-here"}, {"ID": "d", "Names": "x"}]

    text = format_rows(r"table {{.ID}}\t{{.Names}}", rows, {"ID": "CONTAINER ID", "Names": "NAMES"})

    assert text == "CONTAINER ID   NAMES\nabc            long-name-here\nd              x\n"


# create and attach

def test_create_then_start(busybox, cli):
    created = cli("create", "--name", "made", "--network", "none", "-e", "WORD=hi", "busybox", "sh", "-c",
                  "echo $WORD; exit 5")
    status = cli("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout
    started = cli("start", "-a", "made")

    assert created.returncode == 0, created.stderr
    assert len(created.stdout.strip()) == 64
    assert status == "made Created\n"
    assert started.stdout == "hi\n"
    assert started.returncode == 5


def test_create_rm_removes_after_start(busybox, cli):
    cli("create", "--rm", "--name", "once", "--network", "none", "busybox", "true")
    cli("start", "once")
    cli("wait", "once")

    assert cli("ps", "-aq").stdout == ""


def test_create_rejects_bad_flags(busybox, cli):
    result = cli("create", "-w", "relative", "busybox")

    assert result.returncode == 1
    assert "needs to be an absolute path" in result.stderr
    assert cli("ps", "-aq").stdout == ""


def test_attach_follows_output_until_exit(busybox, cli):
    run_detached(cli, "talker", "echo before; sleep 2; echo after; echo oops >&2; exit 3")

    attached = cli("attach", "talker")
    again = cli("attach", "talker")

    assert attached.returncode == 3
    assert attached.stdout == "after\n"
    assert attached.stderr == "oops\n"
    assert again.returncode == 1
    assert again.stderr == "You cannot attach to a stopped container, start it first\n"


# exec -t and exec -d


def wait_for_file(cli, container, path, timeout=20):
    """Poll until `path` exists in the running container; return whether it appeared in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cli("exec", container, "test", "-e", path).returncode == 0:
            return True
        time.sleep(0.2)
    return False


def test_exec_tty_is_dev_pts(busybox, cli):
    run_detached(cli, "r")

    # The terminal ends lines with \r\n, which text mode reads as \n.
    result = cli("exec", "-t", "r", "tty")

    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"/dev/pts/\d+\n", result.stdout), result.stdout


def test_exec_tty_exit_code_passes(busybox, cli):
    run_detached(cli, "r")

    result = cli("exec", "-t", "r", "sh", "-c", "echo out; echo err >&2; exit 3")

    assert result.returncode == 3
    # stderr goes to the same terminal, as in Docker.
    assert result.stdout == "out\nerr\n"
    assert result.stderr == ""


def test_exec_tty_ignores_stdin_without_interactive(busybox, cli):
    run_detached(cli, "r")

    # Without -i neither the input nor an end of input (Ctrl-D) reaches the
    # terminal, so cat waits until timeout stops it with SIGTERM (143).
    result = cli("exec", "-t", "r", "sh", "-c", "timeout 1 cat; echo status-$?", input="hello\n")

    assert "hello" not in result.stdout
    assert result.stdout.endswith("status-143\n"), result.stdout


def test_exec_tty_ends_with_its_process(busybox, cli):
    run_detached(cli, "r")

    # The background sleep keeps the terminal open after the shell exits.
    started = time.monotonic()
    result = cli("exec", "-t", "r", "sh", "-c", "trap '' HUP; sleep 60 & echo started")
    elapsed = time.monotonic() - started

    assert result.returncode == 0
    assert result.stdout == "started\n"
    assert elapsed < 30


def test_exec_interactive_tty_needs_terminal(busybox, cli):
    run_detached(cli, "r")

    result = cli("exec", "-it", "r", "true", input="")

    assert result.returncode == 1
    assert result.stderr == "the input device is not a TTY\n"


def test_exec_interactive_tty_on_pty(busybox, store_root, cli):
    run_detached(cli, "r")
    # Our stdin and stdout are a pseudo-terminal, as in an interactive shell.
    master, slave = pty.openpty()
    env = dict(os.environ, LAYERLAB_ROOT=str(store_root))
    process = subprocess.Popen([sys.executable, "-m", "layerlab", "exec", "-it", "r", "sh"],
                               stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    os.write(master, b"echo hi-$((40 + 2)); exit 3\n")
    try:
        output = read_until_closed(master)
        status = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)

    # The terminal's echo of the typed line contains the sum unexpanded, so only the output has hi-42.
    assert b"hi-42" in output, output
    assert status == 3


def test_exec_detach_returns_at_once(busybox, cli):
    run_detached(cli, "r")

    result = cli("exec", "-d", "r", "sh", "-c", "sleep 2; touch /done")
    early = cli("exec", "r", "test", "-e", "/done")

    assert result.returncode == 0, result.stderr
    assert early.returncode == 1
    assert wait_for_file(cli, "r", "/done")


def test_exec_detach_discards_output(busybox, cli):
    run_detached(cli, "r")

    result = cli("exec", "-d", "r", "sh", "-c", "echo out; echo err >&2; touch /done")

    assert result.returncode == 0
    assert result.stdout == ""
    assert result.stderr == ""
    assert wait_for_file(cli, "r", "/done")


def test_exec_detach_reaped_by_init(busybox, cli):
    cli("run", "-d", "--init", "--network", "none", "--name", "r", "busybox", "sleep", "300")

    cli("exec", "-d", "r", "sh", "-c", "touch /done")
    appeared = wait_for_file(cli, "r", "/done")
    # The shell is a zombie for a moment after it created the file, until tini reaps it.
    time.sleep(0.5)
    states = cli("exec", "r", "ps", "-o", "stat").stdout.split()[1:]

    assert appeared
    assert "Z" not in "".join(states), states


def test_exec_detach_errors(busybox, cli):
    run_detached(cli, "r")

    missing = cli("exec", "-d", "r", "no-such-command")
    with_tty = cli("exec", "-dt", "r", "true")
    unknown = cli("exec", "-d", "no-such-container", "true")
    run_stopped(cli, "s", "true")
    stopped = cli("exec", "-d", "s", "true")

    assert missing.returncode == 127
    assert 'exec: "no-such-command": executable file not found in $PATH' in missing.stderr
    assert with_tty.returncode == 125
    assert "exec -d with -t is not supported: run the detached command without -t" in with_tty.stderr
    assert unknown.returncode != 0
    assert "no-such-container" in unknown.stderr
    assert stopped.returncode == 1
    assert "is not running" in stopped.stderr
