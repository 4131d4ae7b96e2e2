"""`run` flags beyond the process: stdin, terminals, env files, mounts and volumes, read-only roots,
--init, capabilities, privileges, seccomp, cgroup limits, ulimits, stop settings and labels.

Each test runs real busybox containers with `--network none` in its own store.
"""

import json
import os
import pty
import resource
import subprocess
import sys
import time

import pytest

from tests.engine.test_rootless import as_user, bootstrap, data_home, tester  # noqa: F401 (fixtures)
from tests.terminal import read_until_closed


RUN = ("run", "--rm", "--network", "none")

# An ordinary user's cgroups here are not delegated to it, so the engine rejects limits; see test_limits_rejected_rootless.
needs_cgroups = pytest.mark.skipif(os.geteuid() != 0, reason="cgroup limits need root (no delegated cgroup2 subtree)")


def status_field(text, name):
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return None


def leftover_cgroups():
    found = []
    for controller in ("memory", "cpu", "pids"):
        parent = f"/sys/fs/cgroup/{controller}/layerlab"
        if os.path.isdir(parent):
            found += [name for name in os.listdir(parent) if os.path.isdir(os.path.join(parent, name))]
    unified = "/sys/fs/cgroup/layerlab"
    if os.path.isdir(unified):
        found += [name for name in os.listdir(unified) if os.path.isdir(os.path.join(unified, name))]
    return found


# -i and -t

def test_interactive_passes_stdin(busybox, cli):
    result = cli(*RUN, "-i", "busybox", "cat", input="hi\n")

    assert result.returncode == 0
    assert result.stdout == "hi\n"


def test_stdin_closed_without_interactive(busybox, cli):
    result = cli(*RUN, "busybox", "cat", input="hi\n")

    assert result.returncode == 0
    assert result.stdout == ""


def test_tty_is_dev_pts_0(busybox, cli):
    # The terminal ends lines with \r\n, which text mode reads as \n.
    result = cli(*RUN, "-t", "busybox", "tty")

    assert result.returncode == 0
    assert result.stdout == "/dev/pts/0\n"


def test_tty_adds_dev_console(busybox, cli):
    result = cli(*RUN, "-t", "busybox", "sh", "-c", "test -c /dev/console && echo console")

    assert result.stdout == "console\n"


def test_interactive_tty_needs_terminal(busybox, cli):
    result = cli(*RUN, "-it", "busybox", "true", input="")

    assert result.returncode == 1
    assert result.stderr == "the input device is not a TTY\n"


def test_interactive_tty_on_pty(busybox, store_root):
    # Our stdin and stdout are a pseudo-terminal, as in an interactive shell.
    master, slave = pty.openpty()
    env = dict(os.environ, LAYERLAB_ROOT=str(store_root))
    process = subprocess.Popen([sys.executable, "-m", "layerlab", *RUN, "-it", "busybox", "sh", "-c",
                                "read line; echo got-$line; tty"],
                               stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    os.write(master, b"hello\n")
    output = read_until_closed(master)
    os.close(master)

    assert process.wait(timeout=60) == 0
    assert b"got-hello" in output
    assert b"/dev/pts/0" in output


def test_detached_tty_logs_terminal_output(busybox, cli):
    started = cli("run", "-dt", "--network", "none", "--name", "t", "busybox", "tty")
    cli("wait", "t")

    logs = cli("logs", "t")
    cli("rm", "-f", "t")

    assert started.returncode == 0
    assert logs.stdout.replace("\r", "") == "/dev/pts/0\n"


# --env-file and labels

def test_env_file_sets_variables(busybox, cli, tmp_path):
    # A bare name takes its value from our environment, as HOME does here.
    env_file = tmp_path / "env"
    env_file.write_text("# comment\n\nA=1\nB=two words\nHOME\n")

    result = cli(*RUN, "--env-file", env_file, "-e", "A=override", "busybox", "sh", "-c", 'echo "$A|$B|$HOME"')

    assert result.stdout == f"override|two words|{os.environ['HOME']}\n"


def test_env_file_rejects_space_in_name(busybox, cli, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("BAD NAME=1\n")

    result = cli(*RUN, "--env-file", env_file, "busybox", "true")

    assert result.returncode == 125
    assert "variable 'BAD NAME' contains whitespaces" in result.stderr


def test_env_file_missing(busybox, cli, tmp_path):
    result = cli(*RUN, "--env-file", tmp_path / "none", "busybox", "true")

    assert result.returncode == 125
    assert "no such file or directory" in result.stderr


def test_labels_in_inspect(busybox, cli):
    cli("run", "--network", "none", "--name", "t", "-l", "tier=web", "--label", "empty", "busybox", "true")

    labels = json.loads(cli("inspect", "-f", "{{json .Config.Labels}}", "t").stdout)

    assert labels["tier"] == "web"
    assert labels["empty"] == ""


def test_stop_settings_in_inspect(busybox, cli):
    cli("run", "--network", "none", "--name", "t", "--stop-signal", "USR1", "--stop-timeout", "3", "busybox", "true")

    document = json.loads(cli("inspect", "t").stdout)[0]

    assert document["Config"]["StopSignal"] == "SIGUSR1"
    assert document["Config"]["StopTimeout"] == 3


def test_stop_uses_stop_signal(busybox, cli):
    # The shell exits 42 on USR1 only, so the exit code shows which signal came.
    script = "trap 'exit 42' USR1; while true; do sleep 0.1; done"
    cli("run", "-d", "--network", "none", "--name", "t", "--stop-signal", "SIGUSR1", "--stop-timeout", "20",
        "busybox", "sh", "-c", script)

    stop = cli("stop", "t")
    code = cli("inspect", "-f", "{{.State.ExitCode}}", "t").stdout.strip()
    cli("rm", "-f", "t")

    assert stop.returncode == 0
    assert code == "42"


def test_stop_waits_the_containers_stop_timeout(busybox, cli):
    # The shell ignores TERM, so only the kill after the grace period ends it.
    cli("run", "-d", "--network", "none", "--name", "t", "--stop-timeout", "1", "busybox", "sh", "-c",
        "trap '' TERM; while true; do sleep 0.1; done")

    stop = cli("--debug", "stop", "t")
    code = cli("inspect", "-f", "{{.State.ExitCode}}", "t").stdout.strip()
    cli("rm", "-f", "t")

    assert stop.returncode == 0
    assert code == "137"
    assert "did not stop within 1 seconds; killing it" in stop.stderr


def test_restart_flag_accepts_only_no(busybox, cli):
    accepted = cli(*RUN, "--restart", "no", "busybox", "true")
    rejected = cli(*RUN, "--restart", "always", "busybox", "true")

    assert accepted.returncode == 0, accepted.stderr
    assert rejected.returncode == 125
    assert "restart policy 'always' is not supported: layerlab has no daemon" in rejected.stderr
    assert cli("ps", "-aq").stdout == ""


# -v, --mount and --tmpfs

def test_bind_mount_read_write(busybox, cli, tmp_path):
    (tmp_path / "in.txt").write_text("from host\n")

    result = cli(*RUN, "-v", f"{tmp_path}:/data", "busybox", "sh", "-c", "cat /data/in.txt; echo back > /data/out.txt")

    assert result.stdout == "from host\n"
    assert (tmp_path / "out.txt").read_text() == "back\n"


def test_bind_mount_read_only(busybox, cli, tmp_path):
    result = cli(*RUN, "-v", f"{tmp_path}:/data:ro", "busybox", "touch", "/data/x")

    assert result.returncode == 1
    assert "Read-only file system" in result.stderr
    assert not (tmp_path / "x").exists()


def test_bind_creates_missing_host_dir(busybox, cli, tmp_path):
    result = cli(*RUN, "-v", f"{tmp_path}/made:/data", "busybox", "true")

    assert result.returncode == 0
    assert (tmp_path / "made").is_dir()


def test_mount_bind_missing_source(busybox, cli, tmp_path):
    result = cli(*RUN, "--mount", f"type=bind,source={tmp_path}/none,target=/data", "busybox", "true")

    assert result.returncode == 125
    assert "bind source path does not exist" in result.stderr


def test_mount_bind_readonly(busybox, cli, tmp_path):
    result = cli(*RUN, "--mount", f"type=bind,source={tmp_path},target=/data,readonly", "busybox",
                 "sh", "-c", "grep ' /data ' /proc/mounts")

    assert result.stdout.split()[3].split(",")[0] == "ro"


def test_named_volume_persists(busybox, cli, store_root):
    cli(*RUN, "-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/file")

    second = cli(*RUN, "-v", "data:/data", "busybox", "cat", "/data/file")

    assert second.stdout == "kept\n"
    assert (store_root / "volumes" / "data" / "_data" / "file").read_text() == "kept\n"


def test_named_volume_copies_image_files(busybox, cli, store_root):
    result = cli(*RUN, "-v", "etc:/etc", "busybox", "cat", "/etc/passwd")

    copied = store_root / "volumes" / "etc" / "_data" / "passwd"

    assert result.returncode == 0
    assert result.stdout.startswith("root:")
    assert copied.read_text() == result.stdout


def test_named_volume_nocopy(busybox, cli, store_root):
    result = cli(*RUN, "-v", "empty:/etc:nocopy", "busybox", "ls", "/etc")

    assert result.stdout == ""


def test_anonymous_volume_removed_with_rm(busybox, cli, store_root):
    result = cli(*RUN, "-v", "/scratch", "busybox", "touch", "/scratch/x")

    assert result.returncode == 0
    assert cli("volume", "ls", "-q").stdout == ""


def test_tmpfs_flag(busybox, cli):
    result = cli(*RUN, "--tmpfs", "/scratch:size=1m", "busybox", "sh", "-c", "grep ' /scratch ' /proc/mounts")

    options = result.stdout.split()[3].split(",")

    assert result.stdout.split()[2] == "tmpfs"
    assert "noexec" in options
    assert "size=1024k" in options


def test_mount_tmpfs(busybox, cli):
    result = cli(*RUN, "--mount", "type=tmpfs,target=/scratch,tmpfs-size=2m", "busybox", "sh", "-c",
                 "touch /scratch/x && grep ' /scratch ' /proc/mounts")

    assert result.returncode == 0
    assert "size=2048k" in result.stdout


def test_volume_relative_target_rejected(busybox, cli):
    result = cli(*RUN, "-v", "data:relative", "busybox", "true")

    assert result.returncode == 125
    assert "must be absolute" in result.stderr


def test_duplicate_mount_point_rejected(busybox, cli, tmp_path):
    result = cli(*RUN, "-v", f"{tmp_path}:/data", "--tmpfs", "/data", "busybox", "true")

    assert result.returncode == 125
    assert "Duplicate mount point: /data" in result.stderr


# volume commands

def test_volume_create_ls_inspect_rm(busybox, cli, store_root):
    created = cli("volume", "create", "--label", "k=v", "myvol")
    listed = cli("volume", "ls")
    document = json.loads(cli("volume", "inspect", "myvol").stdout)[0]
    removed = cli("volume", "rm", "myvol")

    assert created.stdout == "myvol\n"
    assert listed.stdout == "DRIVER    VOLUME NAME\nlocal     myvol\n"
    assert document["Driver"] == "local"
    assert document["Labels"] == {"k": "v"}
    assert document["Mountpoint"] == str(store_root / "volumes" / "myvol" / "_data")
    assert removed.stdout == "myvol\n"
    assert cli("volume", "ls", "-q").stdout == ""


def test_volume_create_random_name(busybox, cli):
    created = cli("volume", "create")

    assert len(created.stdout.strip()) == 64


def test_volume_rm_in_use(busybox, cli):
    cli("run", "--network", "none", "--name", "user", "-v", "busy:/data", "busybox", "true")

    removed = cli("volume", "rm", "busy")

    assert removed.returncode == 1
    assert "volume is in use" in removed.stderr


def test_volume_rm_missing(busybox, cli):
    removed = cli("volume", "rm", "nothing")

    assert removed.returncode == 1
    assert removed.stderr == "Error: No such volume: nothing\n"


def test_volume_prune_keeps_used(busybox, cli):
    cli("volume", "create", "unused")
    cli("run", "--network", "none", "--name", "user", "-v", "used:/data", "busybox", "true")

    pruned = cli("volume", "prune", "-f")

    assert pruned.stdout.startswith("Deleted Volumes:\nunused\n")
    assert cli("volume", "ls", "-q").stdout == "used\n"


def test_volume_invalid_name(busybox, cli):
    result = cli("volume", "create", "bad/name")

    assert result.returncode == 1
    assert "includes invalid characters for a local volume name" in result.stderr


# --read-only and --init

def test_read_only_root(busybox, cli, tmp_path):
    result = cli(*RUN, "--read-only", "--tmpfs", "/tmp", "-v", f"{tmp_path}:/data", "busybox", "sh", "-c",
                 "touch /x 2>/dev/null && echo root-writable; touch /tmp/y /data/z && echo mounts-writable")

    assert result.stdout == "mounts-writable\n"


def test_init_is_pid_1(busybox, cli):
    result = cli(*RUN, "--init", "busybox", "cat", "/proc/1/cmdline")

    assert result.returncode == 0
    assert result.stdout.split("\0")[:3] == ["/sbin/docker-init", "--", "cat"]


def test_init_reaps_zombies(busybox, cli):
    # The shell forks a child that forks a grandchild and exits at once; the
    # orphan goes to PID 1, which must reap it.
    script = "sh -c 'sleep 0.2 &' ; sleep 1; ps -o stat | grep -c Z"
    result = cli(*RUN, "--init", "busybox", "sh", "-c", script)

    assert result.stdout.strip() == "0"


def test_init_forwards_signals(busybox, cli):
    cli("run", "-d", "--network", "none", "--init", "--name", "t", "busybox", "sh", "-c",
        "trap 'exit 7' TERM; while true; do sleep 0.1; done")

    cli("stop", "-t", "20", "t")
    code = cli("inspect", "-f", "{{.State.ExitCode}}", "t").stdout.strip()
    cli("rm", "-f", "t")

    assert code == "7"


# capabilities, privileges and seccomp

def test_cap_add_and_drop(busybox, cli):
    result = cli(*RUN, "--cap-add", "NET_ADMIN", "--cap-drop", "chown", "busybox", "cat", "/proc/self/status")

    effective = int(status_field(result.stdout, "CapEff"), 16)

    assert effective & (1 << 12)
    assert not effective & (1 << 0)


def test_cap_unknown_rejected(busybox, cli):
    result = cli(*RUN, "--cap-add", "NOT_A_CAP", "busybox", "true")

    assert result.returncode == 125
    assert "unknown capability: 'NOT_A_CAP'" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="rootless --privileged gets the capabilities of the container's "
                    "user namespace and the host's /dev nodes as bind mounts, not the launcher's set and every device")
def test_privileged_world(busybox, cli):
    result = cli(*RUN, "--privileged", "busybox", "sh", "-c",
                 "cat /proc/self/status; grep ' /sys ' /proc/mounts; grep -c ' /proc/kcore ' /proc/mounts; ls /dev")

    effective = int(status_field(result.stdout, "CapEff"), 16)
    permitted_by_launcher = int(status_field(open("/proc/self/status").read(), "CapEff"), 16)

    assert effective == permitted_by_launcher
    assert status_field(result.stdout, "Seccomp") == "0"
    assert " sysfs rw," in result.stdout
    assert "\n0\n" in result.stdout
    # A host device outside the standard set, such as the disk.
    host_only = {name for name in os.listdir("/dev") if name.startswith(("vd", "sd", "loop", "nvme"))}
    assert not host_only or host_only & set(result.stdout.split())


def test_no_new_privileges(busybox, cli):
    result = cli(*RUN, "--security-opt", "no-new-privileges", "busybox", "cat", "/proc/self/status")

    assert status_field(result.stdout, "NoNewPrivs") == "1"


def test_default_seccomp_filter(busybox, cli):
    result = cli(*RUN, "busybox", "cat", "/proc/self/status")

    assert status_field(result.stdout, "Seccomp") == "2"
    assert status_field(result.stdout, "NoNewPrivs") == "0"


def test_seccomp_blocks_unshare(busybox, cli):
    # unshare(2) needs CAP_SYS_ADMIN in the profile, so it fails with EPERM even for a mount namespace.
    result = cli(*RUN, "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "busybox",
                 "unshare", "-m", "true")
    blocked = cli(*RUN, "busybox", "unshare", "-m", "true")

    assert result.returncode == 0
    assert blocked.returncode != 0
    assert "Operation not permitted" in blocked.stderr


def test_seccomp_unconfined(busybox, cli):
    result = cli(*RUN, "--security-opt", "seccomp=unconfined", "busybox", "cat", "/proc/self/status")

    assert status_field(result.stdout, "Seccomp") == "0"


def test_exec_has_the_containers_security(busybox, cli):
    cli("run", "-d", "--network", "none", "--name", "t", "--cap-add", "NET_ADMIN", "--cap-drop", "CHOWN",
        "--security-opt", "no-new-privileges", "busybox", "sleep", "60")
    try:
        init = cli("exec", "t", "cat", "/proc/1/status").stdout
        joined = cli("exec", "t", "cat", "/proc/self/status").stdout
        blocked = cli("exec", "t", "unshare", "-m", "true")
        privileged = cli("exec", "--privileged", "t", "cat", "/proc/self/status").stdout
    finally:
        cli("rm", "-f", "t")

    for field in ("CapEff", "CapBnd", "Seccomp", "NoNewPrivs"):
        assert status_field(joined, field) == status_field(init, field), field
    assert status_field(joined, "Seccomp") == "2"
    assert "Operation not permitted" in blocked.stderr
    assert status_field(privileged, "Seccomp") == "2"
    assert int(status_field(privileged, "CapEff"), 16) > int(status_field(joined, "CapEff"), 16)


def test_exec_in_unconfined_container_has_no_filter(busybox, cli):
    cli("run", "-d", "--network", "none", "--name", "t", "--security-opt", "seccomp=unconfined", "busybox",
        "sleep", "60")
    try:
        joined = cli("exec", "t", "cat", "/proc/self/status").stdout
    finally:
        cli("rm", "-f", "t")

    assert status_field(joined, "Seccomp") == "0"


def test_security_opt_invalid(busybox, cli):
    result = cli(*RUN, "--security-opt", "bogus", "busybox", "true")

    assert result.returncode == 125
    assert "Invalid --security-opt: 'bogus'" in result.stderr


# cgroups and ulimits

@needs_cgroups
def test_memory_cpus_pids_limits(busybox, cli):
    result = cli(*RUN, "--memory", "64m", "--cpus", "0.5", "--pids-limit", "50", "busybox", "cat", "/proc/self/cgroup")

    lines = dict(line.split(":", 2)[1:] for line in result.stdout.splitlines())
    memory_dir = "/sys/fs/cgroup/memory" + lines.get("memory", "")

    assert result.returncode == 0
    assert lines["memory"].startswith("/layerlab/")
    assert lines["pids"].startswith("/layerlab/")
    assert not os.path.exists(memory_dir)
    assert leftover_cgroups() == []


@needs_cgroups
def test_limits_are_written(busybox, cli):
    result = cli("run", "-d", "--network", "none", "--name", "t", "--memory", "64m", "--cpus", "0.5",
                 "--pids-limit", "50", "busybox", "sleep", "30")
    pid = json.loads(cli("inspect", "t").stdout)[0]["State"]["Pid"]
    with open(f"/proc/{pid}/cgroup") as file:
        paths = dict(line.strip().split(":", 2)[1:] for line in file)
    memory = open(f"/sys/fs/cgroup/memory{paths['memory']}/memory.limit_in_bytes").read().strip()
    quota = open(f"/sys/fs/cgroup/cpu{paths['cpu']}/cpu.cfs_quota_us").read().strip()
    pids = open(f"/sys/fs/cgroup/pids{paths['pids']}/pids.max").read().strip()
    cli("rm", "-f", "t")

    assert result.returncode == 0
    assert memory == str(64 * 1024 * 1024)
    assert quota == "50000"
    assert pids == "50"
    assert leftover_cgroups() == []


@needs_cgroups
def test_pids_limit_enforced(busybox, cli):
    # The sixth process cannot be forked, so the shell fails before `echo`.
    result = cli(*RUN, "--pids-limit", "5", "busybox", "sh", "-c",
                 "for i in 1 2 3 4 5 6 7 8; do sleep 2 & done; wait; echo done")

    assert result.returncode != 0
    assert "done" not in result.stdout
    assert "fork" in result.stderr
    assert leftover_cgroups() == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root can apply cgroup limits")
def test_limits_rejected_rootless(busybox, cli):
    result = cli(*RUN, "--memory", "64m", "--cpus", "0.5", "--pids-limit", "50", "busybox", "true")

    assert result.returncode == 125
    assert "cannot apply --memory and --cpus and --pids-limit: cgroups need root or a delegated cgroup2 subtree" \
        in result.stderr
    assert leftover_cgroups() == []


def test_memory_below_minimum(busybox, cli):
    result = cli(*RUN, "--memory", "1m", "busybox", "true")

    assert result.returncode == 125
    assert "Minimum memory limit allowed is 6MB" in result.stderr


def test_cpus_above_host(busybox, cli):
    result = cli(*RUN, "--cpus", str((os.cpu_count() or 1) + 1), "busybox", "true")

    assert result.returncode == 125
    assert "Range of CPUs is from 0.01" in result.stderr


def test_ulimits_inherited(busybox, cli):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    result = cli(*RUN, "busybox", "sh", "-c", "ulimit -n; ulimit -Hn")

    assert result.stdout.split() == [str(soft), str(hard)]


def test_ulimit_lowered(busybox, cli):
    result = cli(*RUN, "--ulimit", "nofile=100:200", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn")

    assert result.stdout.split() == ["100", "200"]


def test_ulimit_above_hard_rejected(busybox, cli):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("the nofile hard limit is unlimited here")

    result = cli(*RUN, "--ulimit", f"nofile={hard + 1}", "busybox", "true")

    assert result.returncode == 125
    assert f"above this process's hard limit {hard}" in result.stderr


# rootless

def test_rootless_memory_needs_cgroups(tester, data_home):
    bootstrap(tester, data_home)

    result = as_user(tester, data_home, "layerlab run --rm --memory 64m busybox true", check=False)

    assert result.returncode == 125
    assert "cannot apply --memory: cgroups need root or a delegated cgroup2 subtree" in result.stderr


def test_rootless_flags(tester, data_home):
    bootstrap(tester, data_home)
    mount_dir = os.path.join(data_home, "shared")
    os.mkdir(mount_dir)
    os.chown(mount_dir, tester.pw_uid, tester.pw_gid)

    volume = as_user(tester, data_home, f"layerlab run --rm -v {mount_dir}:/data -v vol:/v --tmpfs /t "
                     "busybox sh -c 'echo x > /data/f; echo y > /v/f; touch /t/z; cat /v/f'")
    tty = as_user(tester, data_home, "layerlab run --rm -t busybox tty")
    seccomp = as_user(tester, data_home, "layerlab run --rm --read-only --cap-drop ALL busybox "
                      "grep -e Seccomp: -e CapEff /proc/self/status")
    stdin = as_user(tester, data_home, "echo hi | layerlab run --rm -i busybox cat")

    assert volume.stdout == "y\n"
    assert open(os.path.join(mount_dir, "f")).read() == "x\n"
    assert tty.stdout == "/dev/pts/0\n"
    assert "Seccomp:\t2" in seccomp.stdout
    assert "CapEff:\t0000000000000000" in seccomp.stdout
    assert stdin.stdout == "hi\n"


# checks before the container is created

def test_relative_workdir_rejected(busybox, cli):
    result = cli(*RUN, "-w", "relative", "busybox", "pwd")

    assert result.returncode == 125
    assert "the working directory 'relative' is invalid, it needs to be an absolute path." in result.stderr
    assert cli("ps", "-aq").stdout == ""


@pytest.mark.parametrize("length, status", [(64, 0), (65, 125), (300, 125)])
def test_hostname_length_limit(busybox, cli, length, status):
    result = cli(*RUN, "-h", "a" * length, "busybox", "hostname")

    assert result.returncode == status
    if status:
        assert f"invalid hostname aaaaaaaaaaaaaaaaaaaa... ({length} characters)" in result.stderr
        assert "sethostname" not in result.stderr
    else:
        assert result.stdout == "a" * length + "\n"


def test_empty_entrypoint_clears_cmd(busybox, cli):
    result = cli(*RUN, "--entrypoint", "", "busybox")
    with_command = cli(*RUN, "--entrypoint", "", "busybox", "echo", "given")

    assert result.returncode == 125
    assert "No command specified: --entrypoint '' clears the image's ENTRYPOINT and CMD" in result.stderr
    assert "has no CMD" not in result.stderr
    assert with_command.stdout == "given\n"


def test_stop_signal_validated(busybox, cli, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM busybox\nSTOPSIGNAL NOPE\n")

    flag = cli(*RUN, "--stop-signal", "NOPE", "busybox", "true")
    build = cli("build", "-t", "badsignal", str(tmp_path))
    (tmp_path / "Dockerfile").write_text("FROM busybox\nARG SIG=SIGUSR1\nSTOPSIGNAL $SIG\n")
    good = cli("build", "-t", "goodsignal", str(tmp_path))

    assert flag.returncode == 125
    assert "Invalid signal: NOPE" in flag.stderr
    assert build.returncode != 0
    assert "Invalid signal: NOPE" in build.stderr
    assert good.returncode == 0, good.stderr
    assert cli("inspect", "-f", "{{.Config.StopSignal}}", "goodsignal").stdout == "SIGUSR1\n"


def _read_until(master, output, token, timeout=20):
    """Read the pty master into `output` (a bytearray) until `token` appears after what it held before."""
    import select
    import time

    start = len(output)
    deadline = time.monotonic() + timeout
    while token not in output[start:] and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(master, 4096)
        except OSError:
            return False
        if not chunk:
            return False
        output += chunk
    return token in output[start:]


def _wait_for_foreground(command, timeout=20):
    """Wait until a process named `command` leads its terminal's foreground process group; return whether it did.

    The shell makes a job the foreground group only after it forks it, so a
    Ctrl-C that comes earlier would reach the shell instead.
    """
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    stat = handle.read()
            except OSError:
                continue
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            # After the name: state, ppid, pgrp, session, tty_nr, tpgid (proc(5)).
            if name == command and fields[2] == fields[5]:
                return True
        time.sleep(0.05)
    return False


def test_interactive_shell_ctrl_c_keeps_container(busybox, store_root):
    import fcntl
    import termios

    def own_terminal():
        # As a login shell's child: a session of its own, with the pty as its controlling terminal.
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    master, slave = pty.openpty()
    env = dict(os.environ, LAYERLAB_ROOT=str(store_root))
    process = subprocess.Popen([sys.executable, "-m", "layerlab", *RUN, "-it", "busybox", "sh"],
                               stdin=slave, stdout=slave, stderr=slave, env=env, preexec_fn=own_terminal)
    os.close(slave)
    output = bytearray()
    try:
        prompt = _read_until(master, output, b"# ")
        os.write(master, b"tty; set -o | grep monitor\n")
        job_control = _read_until(master, output, b"monitor         on")
        os.write(master, b"sleep 100\n")
        sleeping = _wait_for_foreground("sleep")
        os.write(master, b"\x03")
        _read_until(master, output, b"# ")
        os.write(master, b"echo status-$?\n")
        interrupted = _read_until(master, output, b"status-130\r\n/ # ")
        os.write(master, b"exit\n")
        # Keep reading until the terminal closes, so the relay never blocks on a full pty buffer.
        _read_until(master, output, b"\0", timeout=30)
        status = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)

    text = output.decode(errors="replace")
    assert prompt, text
    assert "/dev/pts/0" in text
    assert job_control, text
    assert sleeping
    assert interrupted, text
    assert status == 0


def test_restart_policy_no_accepted():
    from layerlab.engine.run_options import parse_restart_policy

    assert parse_restart_policy("no") == {"Name": "no", "MaximumRetryCount": 0}
    assert parse_restart_policy("") == {"Name": "", "MaximumRetryCount": 0}


@pytest.mark.parametrize("policy", ["always", "unless-stopped", "on-failure", "on-failure:3"])
def test_restart_policy_needs_daemon(policy):
    from layerlab.engine.errors import InvalidArgumentError
    from layerlab.engine.run_options import parse_restart_policy

    with pytest.raises(InvalidArgumentError, match="layerlab has no daemon to restart containers"):
        parse_restart_policy(policy)


@pytest.mark.parametrize("policy, message", [
    ("sometimes", "invalid restart policy 'sometimes'"),
    ("on-failure:x", "maximum retry count must be an integer"),
    ("on-failure:-1", "maximum retry count cannot be negative"),
    ("always:2", "maximum retry count cannot be used with restart policy 'always'"),
    ("on-failure:1:2", "invalid restart policy format"),
])
def test_restart_policy_invalid(policy, message):
    from layerlab.engine.errors import InvalidArgumentError
    from layerlab.engine.run_options import parse_restart_policy

    with pytest.raises(InvalidArgumentError, match=message):
        parse_restart_policy(policy)


def test_run_records_restart_policy_no(busybox, cli):
    cli("create", "--name", "policy", "--network", "none", "busybox", "true")

    host_config = json.loads(cli("inspect", "policy").stdout)[0]["HostConfig"]

    assert host_config["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
