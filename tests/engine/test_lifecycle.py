"""Containers from run to rm: diff, commit, flags, exit codes, image removal."""

import json
import os


from tests.conftest import mounts_under


def container_ids(store):
    path = store / "containers"
    return sorted(os.listdir(path)) if path.exists() else []


def test_diff_lists_changes(busybox, cli):
    run = cli("run", "--name", "t", "busybox", "sh", "-c", "rm /bin/ls; echo x > /new")

    diff = cli("diff", "t")

    assert run.returncode == 0
    assert diff.stdout == "C /bin\nD /bin/ls\nA /new\n"


def test_diff_hides_init_files(busybox, cli):
    cli("run", "--name", "t", "busybox", "true")

    diff = cli("diff", "t")

    assert diff.stdout == ""


def test_commit_then_run(busybox, cli):
    cli("run", "--name", "t", "busybox", "sh", "-c", "rm /bin/ls; echo x > /new")

    commit = cli("commit", "t", "img")
    run = cli("run", "--rm", "img", "sh", "-c", "test ! -e /bin/ls && cat /new")

    assert commit.returncode == 0
    assert commit.stdout.startswith("sha256:")
    assert run.stdout == "x\n"
    assert run.returncode == 0


def test_commit_adds_one_layer(busybox, cli):
    cli("run", "--name", "t", "busybox", "sh", "-c", "echo x > /new")
    cli("commit", "t", "img")

    base = json.loads(cli("inspect", "busybox").stdout)[0]
    image = json.loads(cli("inspect", "img").stdout)[0]

    assert image["RootFS"]["Layers"][:-1] == base["RootFS"]["Layers"]
    assert len(image["RootFS"]["Layers"]) == len(base["RootFS"]["Layers"]) + 1


def test_commit_change_cmd(busybox, cli):
    cli("run", "--name", "t", "busybox", "true")
    cli("commit", "--change", 'CMD ["echo", "committed"]', "t", "img")

    run = cli("run", "--rm", "img")

    assert run.stdout == "committed\n"


def test_run_rm_removes_container(busybox, cli):
    run = cli("run", "--rm", "busybox", "true")

    assert run.returncode == 0
    assert container_ids(busybox) == []
    assert mounts_under(busybox) == []


def test_run_exit_code(busybox, cli):
    run = cli("run", "--rm", "busybox", "sh", "-c", "exit 3")

    assert run.returncode == 3


def test_run_exit_code_recorded(busybox, cli):
    cli("run", "--name", "t", "busybox", "sh", "-c", "exit 3")

    state = json.loads(cli("inspect", "t").stdout)[0]["State"]

    assert state["ExitCode"] == 3
    assert state["Status"] == "exited"


def test_run_missing_command(busybox, cli):
    run = cli("run", "--rm", "busybox", "nosuchcommand")

    assert run.returncode == 127
    assert 'exec: "nosuchcommand": executable file not found in $PATH' in run.stderr
    assert "Traceback" not in run.stderr


def test_run_not_executable(busybox, cli):
    run = cli("run", "--rm", "busybox", "/etc/passwd")

    assert run.returncode == 126
    assert "Traceback" not in run.stderr


def test_run_missing_image(store_root, cli):
    run = cli("run", "--rm", "nothere")

    assert run.returncode == 125
    assert "nothere:latest" in run.stderr
    assert "layerlab bootstrap" in run.stderr


def test_run_env(busybox, cli):
    run = cli("run", "--rm", "-e", "FOO=bar", "busybox", "sh", "-c", "echo $FOO")

    assert run.stdout == "bar\n"


def test_run_env_keeps_path(busybox, cli):
    run = cli("run", "--rm", "-e", "FOO=bar", "busybox", "sh", "-c", "echo $PATH")

    assert run.stdout == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"


def test_run_workdir(busybox, cli):
    run = cli("run", "--rm", "-w", "/made/here", "busybox", "pwd")

    assert run.stdout == "/made/here\n"


def test_run_user(busybox, cli):
    run = cli("run", "--rm", "-u", "65534:65534", "busybox", "id")

    assert run.stdout.startswith("uid=65534")
    assert "gid=65534" in run.stdout


def test_run_entrypoint(busybox, cli):
    run = cli("run", "--rm", "--entrypoint", "echo", "busybox", "a", "b")

    assert run.stdout == "a b\n"


def test_run_name_in_ps(busybox, cli):
    cli("run", "--name", "named", "busybox", "true")

    ps = cli("ps", "-a")

    assert ps.stdout.splitlines()[1].split()[-1] == "named"


def test_run_name_taken(busybox, cli):
    cli("run", "--name", "named", "busybox", "true")

    second = cli("run", "--name", "named", "busybox", "true")

    assert second.returncode == 125
    assert "named" in second.stderr


def test_run_hostname(busybox, cli):
    run = cli("run", "--rm", "-h", "box", "busybox", "hostname")

    assert run.stdout == "box\n"


def test_rm_container(busybox, cli):
    cli("run", "--name", "t", "busybox", "true")

    rm = cli("rm", "t")

    assert rm.stdout == "t\n"
    assert container_ids(busybox) == []


def test_rm_missing_container(busybox, cli):
    rm = cli("rm", "nothere")

    assert rm.returncode == 1
    assert "nothere" in rm.stderr


def test_rmi_untags_and_deletes(busybox, cli):
    cli("run", "--name", "t", "busybox", "true")
    image_id = cli("commit", "t", "img").stdout.strip()

    rmi = cli("rmi", "img")

    assert rmi.stdout == f"Untagged: img:latest\nDeleted: {image_id}\n"


def test_rmi_second_tag_only_untags(busybox, cli):
    cli("tag", "busybox", "other:1")

    rmi = cli("rmi", "other:1")

    assert rmi.stdout == "Untagged: other:1\n"
    assert cli("run", "--rm", "busybox", "true").returncode == 0


def test_rmi_in_use_rejected(busybox, cli):
    cli("run", "--name", "t", "busybox", "true")

    rmi = cli("rmi", "busybox")

    assert rmi.returncode == 1
    assert "conflict: unable to remove repository reference \"busybox\" (must force)" in rmi.stderr
    assert cli("images", "-q").stdout.strip() != ""


def test_rmi_in_use_forced(busybox, cli):
    cli("run", "--name", "t", "busybox", "true")

    rmi = cli("rmi", "-f", "busybox")

    assert rmi.returncode == 0
    assert rmi.stdout.startswith("Untagged: busybox:latest\n")


def _commit_child(cli, base, container, target):
    """Commit `base` plus one file as `target`, whose parent is then `base`; return its ID."""
    assert cli("run", "--name", container, "--network", "none", base, "touch", "/" + container).returncode == 0
    image_id = cli("commit", container, target).stdout.strip()
    cli("rm", container)
    return image_id


def test_rmi_force_tag_keeps_image_of_running_container(busybox, cli):
    keep = _commit_child(cli, "busybox", "a", "bkkeep:1")
    assert cli("run", "-d", "--name", "user", "--network", "none", "bkkeep:1", "sleep", "600").returncode == 0
    try:
        by_tag = cli("rmi", "-f", "bkkeep:1")
        by_id = cli("rmi", "-f", keep[7:19])
        user_id = cli("inspect", "--format", "{{.Id}}", "user").stdout.strip()
    finally:
        cli("rm", "-f", "user")

    assert by_tag.returncode == 0, by_tag.stderr
    assert by_tag.stdout == "Untagged: bkkeep:1\n"
    assert by_id.returncode == 1
    assert by_id.stdout == ""
    assert by_id.stderr == (f"Error response from daemon: conflict: unable to delete {keep[7:19]} (cannot be forced) - "
                            f"image is being used by running container {user_id[:12]}\n")
    assert keep[7:19] in cli("images", "-q").stdout


def test_rmi_force_keeps_image_with_child(busybox, cli):
    keep = _commit_child(cli, "busybox", "a", "bkkeep:1")
    _commit_child(cli, "bkkeep:1", "b", "bkchild:1")

    by_tag = cli("rmi", "-f", "bkkeep:1")
    by_id = cli("rmi", "-f", keep[7:19])

    assert by_tag.stdout == "Untagged: bkkeep:1\n"
    assert by_id.returncode == 1
    assert "(cannot be forced) - image has dependent child images" in by_id.stderr
    assert cli("inspect", keep).returncode == 0


def test_rmi_force_child_of_built_image(busybox, cli, context):
    keep = _commit_child(cli, "busybox", "a", "bkkeep:1")
    (context / "Dockerfile").write_text("FROM bkkeep:1\nRUN touch /built\n")
    assert cli("build", "-q", "-t", "bkbuilt:1", str(context)).returncode == 0

    by_id = cli("rmi", "-f", keep[7:19])

    assert by_id.returncode == 1
    assert "image has dependent child images" in by_id.stderr
    assert cli("rmi", "bkbuilt:1").returncode == 0
    assert cli("rmi", "-f", keep[7:19]).stdout == f"Untagged: bkkeep:1\nDeleted: {keep}\n"


def test_rmi_force_deletes_image_of_stopped_container(busybox, cli):
    keep = _commit_child(cli, "busybox", "a", "bkkeep:1")
    cli("create", "--name", "idle", "--network", "none", "bkkeep:1", "true")

    by_id = cli("rmi", keep[7:19])
    forced = cli("rmi", "-f", "bkkeep:1")

    assert by_id.returncode == 1
    assert f"conflict: unable to delete {keep[7:19]} (must be forced) - image is being used by stopped container" in by_id.stderr
    assert forced.stdout == f"Untagged: bkkeep:1\nDeleted: {keep}\n"
    assert cli("inspect", "--format", "{{.Image}}", "idle").stdout.strip() == keep
    assert cli("rm", "idle").returncode == 0


def test_rmi_missing_image(busybox, cli):
    rmi = cli("rmi", "nothere")

    assert rmi.returncode == 1
    assert "nothere" in rmi.stderr
