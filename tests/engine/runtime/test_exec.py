"""exec_process: a second process in the namespaces of a running container."""

import os
import re

import pytest

from layerlab.engine.errors import ConflictError, ContainerError, InvalidArgumentError
from layerlab.engine.runtime import ProcessSpec, start
from layerlab.engine.runtime.exec import exec_process
from tests.terminal import read_until_closed


@pytest.fixture
def sleeper(run):
    """A container running `sleep 100` on the busybox root, killed and reaped after the test."""
    container = start(run.spec(["sleep", "100"], env=["PATH=/bin"]))
    yield container
    container.kill()
    container.wait()


def _exec(container, args, **options):
    """Run `args` in the container; return (exit code, stdout text)."""
    process = ProcessSpec(args=list(args), env=options.pop("env", ["PATH=/bin"]), **options)
    read_end, write_end = os.pipe()
    try:
        started = exec_process(container.pid, process, join_network=True, stdio=(None, write_end, None))
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as output:
        text = output.read().decode()
    return started.wait(), text


def test_exec_sees_container_hostname(sleeper):
    assert _exec(sleeper, ["hostname"]) == (0, "testbox\n")


def test_exec_sees_container_pids(sleeper):
    status, text = _exec(sleeper, ["sh", "-c", "ls /proc | grep '^[0-9]'"])
    assert status == 0
    # The container's init is PID 1 there, and the exec'd shell is another.
    assert "1" in text.split()
    assert len(text.split()) < 5


def test_exec_sees_container_root(sleeper):
    status, text = _exec(sleeper, ["cat", "/etc/motd"])
    assert status == 0
    assert text == "welcome\n"


def test_exec_exit_code_passes(sleeper):
    assert _exec(sleeper, ["sh", "-c", "exit 7"])[0] == 7


def test_exec_killed_by_signal(sleeper):
    assert _exec(sleeper, ["sh", "-c", "kill -9 $$"])[0] == 137


def test_exec_user_env_and_cwd(sleeper):
    status, text = _exec(sleeper, ["sh", "-c", 'echo "$(id -u) $(pwd) $HOME $GREETING"'],
                         user="app", cwd="/tmp", env=["PATH=/bin", "GREETING=hi"])
    assert status == 0
    assert text == "1000 /tmp /home/app hi\n"


def test_exec_has_default_capabilities(sleeper):
    # Docker's default set lacks CAP_SYS_ADMIN, so mount(2) fails.
    status, _ = _exec(sleeper, ["sh", "-c", "mount -t tmpfs none /mnt 2>/dev/null"])
    assert status != 0


def test_exec_missing_command_is_127(sleeper):
    with pytest.raises(ContainerError) as caught:
        _exec(sleeper, ["no-such-command"])
    assert caught.value.exit_code == 127
    assert 'exec: "no-such-command": executable file not found in $PATH' in str(caught.value)


def test_exec_non_executable_is_126(sleeper):
    with pytest.raises(ContainerError) as caught:
        _exec(sleeper, ["/data/notexec"])
    assert caught.value.exit_code == 126


def test_exec_after_exit_fails(run):
    container = start(run.spec(["true"], env=["PATH=/bin"]))
    pid = container.pid
    container.wait()

    with pytest.raises(ConflictError):
        exec_process(pid, ProcessSpec(args=["true"], env=["PATH=/bin"]), join_network=True)


def test_exec_terminal_is_containers_pts(sleeper):
    process = ProcessSpec(args=["sh", "-c", "tty; test -t 0 && test -t 2 && echo all-terminal"], env=["PATH=/bin"],
                          terminal=True)

    started = exec_process(sleeper.pid, process, join_network=True)
    try:
        text = read_until_closed(started.terminal_fd).decode()
    finally:
        os.close(started.terminal_fd)

    assert started.wait() == 0
    assert re.fullmatch(r"/dev/pts/\d+\r\nall-terminal\r\n", text), text


def test_exec_terminal_is_controlling(sleeper):
    # The process leads a session of its own, and the terminal is that session's.
    process = ProcessSpec(args=["sh", "-c", "cat /proc/$$/stat"], env=["PATH=/bin"], terminal=True)

    started = exec_process(sleeper.pid, process, join_network=True)
    try:
        text = read_until_closed(started.terminal_fd).decode()
    finally:
        os.close(started.terminal_fd)
    fields = text[text.rindex(")") + 2:].split()

    assert started.wait() == 0
    # After the name: state, ppid, pgrp, session, tty_nr (proc(5)).
    assert fields[3] == text.split()[0]
    assert fields[4] != "0"


def test_exec_detached_goes_to_init(sleeper):
    read_end, write_end = os.pipe()
    process = ProcessSpec(args=["sh", "-c", "sleep 0.5; grep PPid /proc/$$/status"], env=["PATH=/bin"])
    try:
        started = exec_process(sleeper.pid, process, join_network=True, stdio=(None, write_end, None), detach=True)
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as output:
        text = output.read().decode()

    assert started is None
    assert text == "PPid:\t1\n"


def test_exec_detached_missing_command_is_127(sleeper):
    process = ProcessSpec(args=["no-such-command"], env=["PATH=/bin"])

    with pytest.raises(ContainerError) as caught:
        exec_process(sleeper.pid, process, join_network=True, detach=True)

    assert caught.value.exit_code == 127


def test_exec_detached_terminal_rejected(sleeper):
    process = ProcessSpec(args=["true"], env=["PATH=/bin"], terminal=True)

    with pytest.raises(InvalidArgumentError):
        exec_process(sleeper.pid, process, join_network=True, detach=True)
