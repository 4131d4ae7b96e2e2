"""Running another process inside a running container, as `docker exec` does.

The new process joins the namespaces of the container's init: IPC, UTS,
the network namespace when the container has its own, the mount namespace
and the PID namespace. setns(2) with CLONE_NEWPID moves only the children
forked afterwards, so the caller enters the container's PID namespace, forks
and switches back at once, which makes the exec'd process a direct child
that waitpid(2) can reap.

A rootless container's namespaces belong to its user namespace, and an
ordinary user may join them only from inside it. setns(2) into a user
namespace works only in a single-threaded process, so an intermediate child
joins the user namespace and the PID namespace, forks the process and exits.
While it runs, the caller is a child subreaper, so the process becomes the
caller's child as in the root path.

With a terminal (`exec -t`), the process opens the next /dev/pts/N of the
container's devpts once it has joined the mount namespace, sends the master
back over a unix socket as the init of `run -t` does, and makes the slave
its controlling terminal and fds 0-2.

A detached process (`exec -d`) is forked by a short-lived parent that is
already in the container's PID namespace and exits at once. The kernel
gives the orphan to that namespace's init, PID 1 of the container, and not
to the caller, so the caller may exit while the process runs. Whether it is
reaped then depends on that init: tini (`run --init`) reaps it, but a
program such as `sleep` does not, and the zombie stays until the container
stops.
TODO: let the detached container's monitor adopt it, as Docker's containerd-shim does.
"""

import dataclasses
import logging
import os
import signal
import socket

from layerlab.engine.errors import ConflictError, ContainerError, InvalidArgumentError
from layerlab.engine.runtime import syscalls, terminal
from layerlab.engine.runtime.child_errors import receive_error, report_error
from layerlab.engine.runtime.process import (
    _chdir,
    _close_other_fds_on_exec,
    _dup_stdio,
    apply_security,
    execve,
    prepare_security,
)
from layerlab.engine.runtime.specs import ProcessSpec, Security
from layerlab.engine.runtime.userns import needs_user_namespace
from layerlab.engine.runtime.users import resolve_user, user_env

log = logging.getLogger(__name__)

_UMASK = 0o022

# The order matters: the mount namespace comes last, because after it the
# host's /proc and the namespace files opened from it are out of reach.
_NAMESPACES = (
    ("ipc", syscalls.CLONE_NEWIPC),
    ("uts", syscalls.CLONE_NEWUTS),
    ("net", syscalls.CLONE_NEWNET),
    ("mnt", syscalls.CLONE_NEWNS),
)


class ExecProcess:
    """A process started in a container, a child of the caller."""

    def __init__(self, pid, terminal_fd=None):
        self.pid = pid
        self.exit_code = None
        # The master of the process's pseudo-terminal (exec -t); the caller reads and closes it.
        self.terminal_fd = terminal_fd

    def open_pidfd(self):
        """Return a pidfd that becomes readable when the process exits, or None where the kernel lacks pidfd_open(2)."""
        try:
            return os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            # pidfd_open(2) needs Linux 5.3 and Python 3.9.
            return None

    def wait(self):
        """Wait for the process and return its exit code (128 + signal if killed)."""
        if self.exit_code is None:
            _, status = os.waitpid(self.pid, 0)
            code = os.waitstatus_to_exitcode(status)
            self.exit_code = 128 - code if code < 0 else code
        return self.exit_code

    def kill(self, sig=signal.SIGKILL):
        if self.exit_code is None:
            os.kill(self.pid, sig)


@dataclasses.dataclass
class _ChildPlan:
    """Inputs of the forked children that start the process."""

    process: ProcessSpec
    security: Security
    namespace_fds: dict
    stdio: tuple
    console_socket: int | None  # the children's end of the socket for the terminal's master, with process.terminal
    detach: bool


def exec_process(init_pid, process, *, join_network, security=Security(), stdio=(None, None, None), detach=False):
    """Start `process` (a ProcessSpec) in the namespaces of the container whose init is `init_pid`.

    join_network is False for a container that shares the host's network
    namespace. stdio holds the fds for the process's 0-2, None to inherit
    the caller's; with process.terminal the terminal's slave replaces them.
    `security` (the container's, as a Security) gives the process its
    capabilities, seccomp filter and no_new_privs.

    Returns an ExecProcess once the program has been executed, whose
    terminal_fd is the terminal's master with process.terminal. With
    `detach` the process is a child of the container's init instead, and
    the return value is None. A failure before the program runs raises
    ContainerError, with exit_code 127 for a missing program and 126 for
    one that cannot be executed.
    """
    if detach and process.terminal:
        raise InvalidArgumentError("a detached exec cannot have a terminal: nothing would read its output")
    namespace_fds = _open_namespaces(init_pid, join_network)
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    channel = console_socket = None
    if process.terminal:
        channel, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        console_socket = child_end.detach()
    plan = _ChildPlan(process, security, namespace_fds, stdio, console_socket, detach)
    try:
        if needs_user_namespace():
            pid = _fork_in_user_namespace(init_pid, plan, (read_fd, write_fd))
        else:
            pid = _fork_into_pid_namespace(init_pid)
            if pid == 0:
                _run_child(plan, read_fd, write_fd)
    except BaseException:
        os.close(read_fd)
        if channel is not None:
            channel.close()
        raise
    finally:
        for fd in namespace_fds.values():
            os.close(fd)
        os.close(write_fd)
        if console_socket is not None:
            os.close(console_socket)

    try:
        error = receive_error(read_fd)
        if error is None and pid is None:
            error = ContainerError(f"joining the user namespace of container process {init_pid} failed")
        if error is not None:
            if pid is not None:
                os.waitpid(pid, 0)
            raise error

        if detach:
            # `pid` is the parent that forked the process and exited.
            os.waitpid(pid, 0)
            log.info("started %s detached in the container of pid %d", process.args[0], init_pid)
            return None
        # The process sent the master before it executed the program, so it is waiting in the socket.
        terminal_fd = terminal.receive_master(channel) if channel is not None else None
    finally:
        if channel is not None:
            channel.close()

    log.info("started %s as pid %d in the container of pid %d", process.args[0], pid, init_pid)
    return ExecProcess(pid, terminal_fd)


def _open_namespaces(init_pid, join_network):
    fds = {}
    try:
        for name, _ in _NAMESPACES:
            if name == "net" and not join_network:
                continue
            fds[name] = os.open(f"/proc/{init_pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        for fd in fds.values():
            os.close(fd)
        raise ConflictError(f"container process {init_pid} is not running: start the container first") from None
    return fds


def _open_namespace(init_pid, name):
    try:
        return os.open(f"/proc/{init_pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConflictError(f"container process {init_pid} is not running: start the container first") from None


def _fork_in_user_namespace(init_pid, plan, error_pipe):
    """Start the process through an intermediate child that joins the container's user namespace; return its pid.

    Returns the pid in the caller's PID namespace once the intermediate has
    exited and the process has become the caller's child, or None when the
    intermediate failed. Errors of the intermediate and of the process
    arrive on `error_pipe`.
    """
    user_fd = _open_namespace(init_pid, "user")
    try:
        pid_fd = _open_namespace(init_pid, "pid")
    except BaseException:
        os.close(user_fd)
        raise
    pid_read, pid_write = os.pipe2(os.O_CLOEXEC)
    was_subreaper = syscalls.get_child_subreaper()
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    try:
        intermediate = os.fork()
        if intermediate == 0:
            _run_intermediate(plan, error_pipe, (user_fd, pid_fd), (pid_read, pid_write))
        os.close(pid_write)
        try:
            text = os.read(pid_read, 32)
        finally:
            os.close(pid_read)
            # The process is reparented to this one when the intermediate
            # exits, so reap the intermediate before clearing the flag.
            os.waitpid(intermediate, 0)
    finally:
        os.close(user_fd)
        os.close(pid_fd)
        if not was_subreaper:
            syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 0)
    # No pid means the intermediate failed before forking, and its error is on the error pipe.
    return int(text) if text else None


def _run_intermediate(plan, error_pipe, user_and_pid_fds, pid_pipe):
    # Runs in the forked intermediate, which has a single thread, and never returns.
    read_fd, write_fd = error_pipe
    user_fd, pid_fd = user_and_pid_fds
    pid_read, pid_write = pid_pipe
    exit_code = 0
    try:
        os.close(pid_read)
        syscalls.setns(user_fd, syscalls.CLONE_NEWUSER)
        syscalls.setns(pid_fd, syscalls.CLONE_NEWPID)
        try:
            pid = os.fork()
        except OSError as error:
            # fork(2) fails with ENOMEM once the namespace's init has exited.
            raise ConflictError(f"container process is not running: {error.strerror}") from None
        if pid == 0:
            os.close(pid_write)
            _run_child(plan, read_fd, write_fd)
        os.write(pid_write, str(pid).encode())
    except BaseException as error:
        exit_code = 125
        report_error(write_fd, error)
    finally:
        os._exit(exit_code)


def _fork_into_pid_namespace(init_pid):
    target = os.open(f"/proc/{init_pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.setns(target, syscalls.CLONE_NEWPID)
        try:
            pid = os.fork()
        except OSError as error:
            # fork(2) fails with ENOMEM once the namespace's init has exited.
            syscalls.setns(own, syscalls.CLONE_NEWPID)
            raise ConflictError(f"container process {init_pid} is not running: {error.strerror}") from None
        if pid != 0:
            syscalls.setns(own, syscalls.CLONE_NEWPID)
    finally:
        os.close(target)
        os.close(own)
    return pid


def _run_child(plan, read_fd, write_fd):
    # Runs in the forked child and never returns: it either execs or exits.
    exit_code = 125
    try:
        os.close(read_fd)
        if plan.detach and os.fork() != 0:
            # This child is in the container's PID namespace, so when it
            # exits its child (the process) goes to the container's init.
            os._exit(0)
        _enter_container(plan)
    except BaseException as error:
        exit_code = getattr(error, "exit_code", 125)
        report_error(write_fd, error)
    finally:
        os._exit(exit_code)


def _enter_container(plan):
    process, security, namespace_fds = plan.process, plan.security, plan.namespace_fds
    # A session of its own keeps the caller's terminal signals away, as for the init.
    os.setsid()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])

    # The seccomp program is cached on the host, out of reach once the mount namespace is joined.
    mask, seccomp_program = prepare_security(security)

    # setns(2) into a mount namespace also sets the root and the working
    # directory to the namespace's root, which pivot_root made the container's.
    for name, flag in _NAMESPACES:
        if name in namespace_fds:
            syscalls.setns(namespace_fds[name], flag)
    os.umask(_UMASK)

    exec_user = resolve_user(process.user)
    env = user_env(process.env, exec_user, os.uname().nodename)

    if plan.console_socket is not None:
        terminal.attach_slave(terminal.open_exec_terminal(plan.console_socket))
    else:
        _dup_stdio(plan.stdio)
    _close_other_fds_on_exec()

    apply_security(security, exec_user, mask, seccomp_program)
    _chdir(process.cwd)
    execve(process.args, env)


__all__ = ["ExecProcess", "exec_process"]
