"""Starting a container and waiting for it, from the launching process.

The launcher forks the container's init directly into a new PID namespace,
so no intermediate process exists: the child is PID 1 inside and an
ordinary child of the launcher outside, which waitpid(2) can reap.
"""

import dataclasses
import logging
import os
import signal
import socket

from layerlab.engine.errors import ContainerError, InvalidArgumentError
from layerlab.engine.runtime import cgroups, syscalls
from layerlab.engine.runtime.child_errors import receive_error, report_error
from layerlab.engine.runtime.forking import fork_with_interrupts_blocked, kill_and_reap
from layerlab.engine.runtime.netsync import NetworkHandshake
from layerlab.engine.runtime.process import init_container
from layerlab.engine.runtime.userns import MappingHandshake, host_mapping, needs_user_namespace

log = logging.getLogger(__name__)


class Container:
    """A started container, identified by the host PID of its init process."""

    def __init__(self, container_id, pid, *, cgroup_paths=(), terminal_fd=None):
        self.id = container_id
        self.pid = pid
        self.exit_code = None
        self.cgroup_paths = list(cgroup_paths)
        # The master of the container's pseudo-terminal (run -t); the caller reads and closes it.
        self.terminal_fd = terminal_fd

    def wait(self):
        """Wait for the container's init to exit and return its exit code (128 + signal if killed).

        Removes the container's cgroups once the init has been reaped.
        """
        if self.exit_code is None:
            _, status = os.waitpid(self.pid, 0)
            code = os.waitstatus_to_exitcode(status)
            self.exit_code = 128 - code if code < 0 else code
            log.info("container %s (pid %d) exited with code %d", self.id, self.pid, self.exit_code)
            cgroups.remove(self.cgroup_paths)
        return self.exit_code

    def kill(self, sig=signal.SIGKILL):
        """Send `sig` to the container's init; does nothing once it has been reaped.

        The PID 1 of a namespace receives from outside only SIGKILL, SIGSTOP
        and signals for which it has a handler.
        """
        # Until waitpid reaps it the PID cannot be reused, so this never
        # signals an unrelated process.
        if self.exit_code is None:
            os.kill(self.pid, sig)

    def __repr__(self):
        return f"Container(id={self.id!r}, pid={self.pid}, exit_code={self.exit_code})"


def _validate(spec):
    if not spec.process.args:
        raise InvalidArgumentError(f"container {spec.id}: no command specified")
    if spec.network not in ("host", "none") and spec.network_setup is None and not spec.netns_path:
        raise InvalidArgumentError(
            f"container {spec.id}: network {spec.network!r} needs a network_setup callback; use host or none without one"
        )


def fork_into_new_pid_namespace():
    """Fork a child that is PID 1 of a new PID namespace; return its host PID (0 in the child).

    unshare(CLONE_NEWPID) changes only the namespace of the calling thread's
    next children, so the launcher switches it back with setns(2) right after
    the fork and later forks stay in the host's namespace.
    """
    host_namespace = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.unshare(syscalls.CLONE_NEWPID)
        try:
            pid = fork_with_interrupts_blocked()
        except BaseException:
            syscalls.setns(host_namespace, syscalls.CLONE_NEWPID)
            raise
        if pid != 0:
            syscalls.setns(host_namespace, syscalls.CLONE_NEWPID)
    finally:
        os.close(host_namespace)
    return pid


def start(spec, stdin=None, stdout=None, stderr=None, *, kill_with_parent=False):
    """Create and start the container described by `spec` (a ContainerSpec) and return a Container.

    stdin, stdout and stderr are file descriptors for the container's fds
    0-2, or None to inherit the caller's. With kill_with_parent the kernel
    sends SIGKILL to the container when the calling thread exits.

    Creates the cgroups that spec.resources asks for, which Container.wait
    removes. With spec.process.terminal the container's fds 0-2 are a
    pseudo-terminal, and the Container's terminal_fd is its master.

    Returns once the program has been executed. A failure before that raises
    ContainerError, whose exit_code is 127 for a missing program and 126 for
    one that cannot be executed, as in Docker.
    """
    _validate(spec)
    cgroup_paths = cgroups.create(spec.id, spec.resources)
    channel = None
    try:
        if spec.process.terminal:
            channel, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            spec = dataclasses.replace(spec, console_socket=child_end.detach())
        spec = dataclasses.replace(spec, cgroup_paths=tuple(cgroup_paths))
        try:
            if needs_user_namespace():
                container = _start_in_user_namespace(spec, (stdin, stdout, stderr), kill_with_parent)
            else:
                container = _start_as_root(spec, (stdin, stdout, stderr), kill_with_parent)
        finally:
            if spec.console_socket >= 0:
                os.close(spec.console_socket)
        container.cgroup_paths = cgroup_paths
        if channel is not None:
            # The init sent the master before it executed the program, so it is waiting in the socket.
            from layerlab.engine.runtime.terminal import receive_master

            container.terminal_fd = receive_master(channel)
    except BaseException:
        cgroups.remove(cgroup_paths)
        raise
    finally:
        if channel is not None:
            channel.close()
    return container


def _start_as_root(spec, stdio, kill_with_parent):
    stdin, stdout, stderr = stdio
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    handshake = NetworkHandshake() if spec.network_setup is not None else None

    pid = fork_into_new_pid_namespace()
    if pid == 0:
        _run_child(spec, (stdin, stdout, stderr), kill_with_parent, read_fd, write_fd, handshake)

    os.close(write_fd)
    if handshake is not None:
        _set_up_network(spec, pid, handshake, read_fd)
    error = _receive_start_error(read_fd, pid)
    if error is not None:
        os.waitpid(pid, 0)
        log.info("container %s failed to start: %s", spec.id, error)
        raise error

    log.info("started container %s as pid %d", spec.id, pid)
    return Container(spec.id, pid)


def _receive_start_error(read_fd, pid):
    """Return the child's start error, or None once it has executed its program; closes read_fd."""
    try:
        return receive_error(read_fd)
    except BaseException:
        # Ctrl-C while the child starts: no Container exists yet to kill it.
        if pid:
            kill_and_reap(pid)
        raise


def _set_up_network(spec, pid, handshake, read_fd):
    # The child goes on with its mounts while network_setup runs here.
    handshake.launcher_side()
    try:
        if handshake.wait_ready():
            spec.network_setup(pid)
            handshake.release()
        # Otherwise the child failed first, and its error is on read_fd.
    except BaseException as setup_error:
        kill_and_reap(pid)
        if isinstance(setup_error, KeyboardInterrupt):
            os.close(read_fd)
            raise
        # A child that failed after `ready` (an unknown user, a bad working
        # directory) closed its end of the handshake, so the setup or the
        # release fails too, often with EPIPE. The child's error is the cause.
        child_error = receive_error(read_fd)
        if child_error is not None:
            log.info("container %s failed to start: %s", spec.id, child_error)
            raise child_error from None
        raise
    finally:
        handshake.close()


def _run_child(spec, stdio, kill_with_parent, read_fd, write_fd, network_handshake=None):
    # Runs in the forked child and never returns: it either execs or exits.
    exit_code = 125
    try:
        os.close(read_fd)
        if network_handshake is not None:
            network_handshake.child_side()
        init_container(spec, stdio, kill_with_parent, network_handshake)
    except BaseException as error:
        exit_code = getattr(error, "exit_code", 125)
        report_error(write_fd, error)
    finally:
        os._exit(exit_code)


def _start_in_user_namespace(spec, stdio, kill_with_parent):
    """Start the container as an ordinary user: a user namespace first, then the others inside it.

    Only a process inside the new user namespace may create the PID
    namespace, so an intermediate child unshares the user namespace, waits
    for its maps, unshares CLONE_NEWPID and forks the container's init,
    then exits. While it runs the launcher is a child subreaper, so the
    orphaned init becomes the launcher's child and `Container.wait` can
    reap it as in the root path.
    """
    mapping = host_mapping()
    handshake = MappingHandshake()
    # slirp4netns and pasta join the container's namespaces, so they run once the init has made them.
    network_handshake = NetworkHandshake() if spec.network_setup is not None else None
    error_read, error_write = os.pipe2(os.O_CLOEXEC)
    pid_read, pid_write = os.pipe2(os.O_CLOEXEC)
    # Closed once the intermediate is reaped, which the init waits for before it sets PR_SET_PDEATHSIG.
    reaped_read, reaped_write = os.pipe2(os.O_CLOEXEC)

    was_subreaper = syscalls.get_child_subreaper()
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    try:
        intermediate = fork_with_interrupts_blocked()
        if intermediate == 0:
            _run_intermediate(spec, stdio, kill_with_parent, handshake, (error_read, error_write), (pid_read, pid_write),
                              network_handshake, (reaped_read, reaped_write))

        os.close(reaped_read)
        os.close(error_write)
        os.close(pid_write)
        try:
            handshake.map(intermediate, mapping)
            text = os.read(pid_read, 32)
        finally:
            os.close(pid_read)
            # The init is reparented to this process when the intermediate
            # exits, so reap the intermediate before clearing the flag.
            os.waitpid(intermediate, 0)
            os.close(reaped_write)
    except BaseException:
        os.close(error_read)
        if network_handshake is not None:
            network_handshake.launcher_side()
            network_handshake.close()
        raise
    finally:
        if not was_subreaper:
            syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 0)

    pid = int(text) if text else 0
    if network_handshake is not None:
        if pid:
            _set_up_network(spec, pid, network_handshake, error_read)
        else:
            network_handshake.launcher_side()
            network_handshake.close()
    error = _receive_start_error(error_read, pid)
    if error is not None:
        if pid:
            os.waitpid(pid, 0)
        log.info("container %s failed to start: %s", spec.id, error)
        raise error
    if not pid:
        raise ContainerError(f"container {spec.id}: the process that creates its namespaces exited without starting it")

    log.info("started container %s as pid %d in a user namespace (%s)", spec.id, pid, mapping.describe())
    return Container(spec.id, pid)


def _run_intermediate(spec, stdio, kill_with_parent, handshake, error_pipe, pid_pipe, network_handshake, reaped_pipe):
    # Runs in the forked intermediate and never returns.
    error_read, error_write = error_pipe
    pid_read, pid_write = pid_pipe
    reaped_read, reaped_write = reaped_pipe
    exit_code = 0
    try:
        # The fork blocked the interrupt signals. Unblocked, Ctrl-C ends the
        # intermediate with KeyboardInterrupt, as it ends the launcher.
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.close(pid_read)
        os.close(reaped_write)
        handshake.enter()
        syscalls.unshare(syscalls.CLONE_NEWPID)

        # The init waits until the launcher has reaped the intermediate, so it
        # is already the launcher's child when init_container sets
        # PR_SET_PDEATHSIG. An exiting process closes its files before it
        # reparents its children, and the kernel sends the death signal on
        # that reparenting, so EOF on a pipe of the intermediate's is too early.
        pid = fork_with_interrupts_blocked()
        if pid == 0:
            os.close(pid_write)
            os.read(reaped_read, 1)
            os.close(reaped_read)
            _run_child(spec, stdio, kill_with_parent, error_read, error_write, network_handshake)
        os.write(pid_write, str(pid).encode())
    except BaseException as error:
        exit_code = 125
        report_error(error_write, error)
    finally:
        os._exit(exit_code)
