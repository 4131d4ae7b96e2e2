"""The container's process: output, exit codes, PID namespace, hostname, environment and user."""

import os
import signal

import pytest

from layerlab.engine.errors import ContainerError, InvalidArgumentError
from layerlab.engine.runtime import start


def test_echo_to_pipe(run):
    code, output = run("echo", "hello")
    assert code == 0
    assert output == "hello\n"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["true"], 0),
        (["false"], 1),
        (["sh", "-c", "exit 3"], 3),
    ],
)
def test_exit_code(run, args, expected):
    code, _ = run(*args)
    assert code == expected


def test_pid_1_ignores_unhandled_sigterm(run):
    # The kernel drops signals without a handler sent to a namespace's init.
    code, output = run("sh", "-c", "kill -TERM $$; echo alive")
    assert code == 0
    assert output == "alive\n"


def test_missing_command_is_127(run):
    with pytest.raises(ContainerError) as raised:
        run("nosuchcommand")
    assert raised.value.exit_code == 127
    assert str(raised.value) == 'exec: "nosuchcommand": executable file not found in $PATH'


def test_missing_path_is_127(run):
    with pytest.raises(ContainerError) as raised:
        run("/bin/nosuchcommand")
    assert raised.value.exit_code == 127
    assert "no such file or directory" in str(raised.value)


def test_non_executable_file_is_126(run):
    with pytest.raises(ContainerError) as raised:
        run("/data/notexec")
    assert raised.value.exit_code == 126
    assert str(raised.value) == 'exec: "/data/notexec": permission denied'


def test_sigkill_gives_137(run, rootfs):
    container = start(run.spec(["sleep", "100"]))
    container.kill(signal.SIGKILL)
    assert container.wait() == 137
    assert container.wait() == 137


def test_container_is_pid_1(run):
    code, output = run("sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'")
    pid, process_count = output.split()
    assert code == 0
    assert pid == "1"
    # sh, ls and grep, at most.
    assert int(process_count) <= 3


def test_pid_is_host_pid(run):
    container = start(run.spec(["sleep", "100"]))
    try:
        with open(f"/proc/{container.pid}/status") as file:
            status = file.read()
        assert "NSpid:\t%d\t1\n" % container.pid in status
    finally:
        container.kill()
        container.wait()


def test_later_forks_stay_in_host_pid_namespace(run):
    run("true")
    assert os.readlink("/proc/self/ns/pid_for_children") == os.readlink("/proc/self/ns/pid")


def test_hostname(run):
    code, output = run("hostname", hostname="figlet")
    assert code == 0
    assert output == "figlet\n"


def test_default_environment(run):
    code, output = run("env", env=["FOO=bar"])
    lines = output.splitlines()
    assert code == 0
    assert "FOO=bar" in lines
    assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in lines
    assert "HOSTNAME=testbox" in lines
    assert "HOME=/root" in lines


def test_image_environment_wins(run):
    code, output = run("env", env=["PATH=/bin", "HOME=/data"])
    lines = output.splitlines()
    assert "PATH=/bin" in lines
    assert "HOME=/data" in lines


def test_missing_cwd_is_created(run):
    code, output = run("pwd", cwd="/srv/app")
    assert code == 0
    assert output == "/srv/app\n"


def test_user_by_name(run):
    code, output = run("sh", "-c", "id -u; id -g; id -G; echo $HOME", user="app")
    assert code == 0
    assert output.split("\n")[:4] == ["1000", "1000", "1000 50", "/home/app"]


def test_user_uid_and_gid(run):
    code, output = run("sh", "-c", "id -u; id -g; id -G", user="1000:1000")
    assert code == 0
    assert output.split() == ["1000", "1000", "1000"]


def test_user_with_group_name(run):
    code, output = run("sh", "-c", "id -u; id -g", user="app:staff")
    assert output.split() == ["1000", "50"]


def test_numeric_user_not_in_passwd(run):
    code, output = run("sh", "-c", "id -u; id -g; echo $HOME", user="4242")
    assert code == 0
    assert output.split() == ["4242", "0", "/"]


def test_unknown_user_is_error(run):
    with pytest.raises(ContainerError) as raised:
        run("true", user="nosuchuser")
    assert str(raised.value) == "unable to find user nosuchuser: no matching entries in passwd file"


def test_unknown_group_is_error(run):
    with pytest.raises(ContainerError, match="unable to find group nosuchgroup"):
        run("true", user="app:nosuchgroup")


def test_stdin_from_pipe(run):
    read_end, write_end = os.pipe()
    os.write(write_end, b"from stdin\n")
    os.close(write_end)
    try:
        code, output = run("cat", stdin=read_end)
    finally:
        os.close(read_end)
    assert code == 0
    assert output == "from stdin\n"


def test_inherited_fds_are_closed(run):
    read_end, write_end = os.pipe()
    os.set_inheritable(read_end, True)
    try:
        code, output = run("ls", "/proc/self/fd")
    finally:
        os.close(read_end)
        os.close(write_end)
    assert output.split() == ["0", "1", "2", "3"]  # 3 is the directory ls reads


def test_empty_args_rejected(run):
    with pytest.raises(InvalidArgumentError):
        start(run.spec([]))


def test_unknown_network_rejected(run):
    with pytest.raises(InvalidArgumentError, match="network 'bridge'"):
        start(run.spec(["true"], network="bridge"))


def test_signals_default_in_container(run):
    # Python ignores SIGPIPE; the container's program must not inherit that.
    code, output = run("grep", "SigIgn", "/proc/self/status")
    assert output.split() == ["SigIgn:", "0000000000000000"]
