"""The container's init: the forked child that becomes the container's PID 1 and execs its program.

Everything here runs in the child between fork and execve, already in the
new PID namespace. A failure raises, and `container.start` sends the error
to the parent.
"""

import errno
import fcntl
import logging
import os
import resource
import signal
import stat

from layerlab.engine.errors import ContainerError
from layerlab.engine.runtime import capabilities, cgroups, rootfs, seccomp, syscalls
from layerlab.engine.runtime.forking import discard_interrupts
from layerlab.engine.runtime.users import resolve_user, user_env
from layerlab.engine.runtime.userns import setgroups_allowed

log = logging.getLogger(__name__)

# Docker's default umask for the container's process.
_UMASK = 0o022


def init_container(spec, stdio, kill_with_parent, network_handshake=None):
    """Set up the namespaces, root, user and capabilities of the container, then exec its program.

    With a network_handshake (a netsync.NetworkHandshake) the child reports
    its new network namespace to the launcher and waits, before it switches
    to the container's user, until the launcher has configured it.
    """
    _detach_from_launcher(kill_with_parent)
    cgroups.join(spec.cgroup_paths)

    _unshare_namespaces(spec)
    syscalls.sethostname(spec.hostname)
    if spec.network != "host" and not spec.netns_path:
        from layerlab.engine.runtime.loopback import set_loopback_up

        set_loopback_up()
    if network_handshake is not None:
        network_handshake.notify_ready()

    # The seccomp program is cached on the host and the terminal's C modules
    # are loaded from it, so both come before pivot_root.
    mask, seccomp_program = prepare_security(spec.security)
    if spec.process.terminal:
        from layerlab.engine.runtime import terminal

    os.umask(_UMASK)
    rootfs.make_mounts_private()
    rootfs.pivot_root(rootfs.prepare_rootfs(spec))

    exec_user = resolve_user(spec.process.user)
    env = user_env(spec.process.env, exec_user, spec.hostname)
    _make_cwd(spec.process.cwd)
    console = None
    if spec.process.terminal:
        console = terminal.open_console(spec.console_socket)
    if spec.readonly_rootfs:
        rootfs.remount_root_readonly()

    if console is not None:
        terminal.attach_slave(console)
    else:
        _dup_stdio(stdio)
    _close_other_fds_on_exec()
    _set_ulimits(spec.ulimits)

    # A helper such as slirp4netns opens /proc/PID/ns/* of this process, which
    # fails once setuid(2) to another container user has made it non-dumpable
    # (until execve), so the wait comes before _switch_user.
    if network_handshake is not None:
        network_handshake.wait_released()

    apply_security(spec.security, exec_user, mask, seccomp_program)

    _chdir(spec.process.cwd)
    execve(spec.process.args, env)


def prepare_security(security):
    """Return the capability mask and the seccomp program (None for no filter) that `security` requires."""
    # A launcher without some capability (root on some hosts lacks
    # CAP_SYS_RESOURCE) cannot grant it, so --privileged gets what it has.
    requested = capabilities.capability_set(security.cap_add, security.cap_drop, security.privileged)
    mask = capabilities.capability_mask(requested) & capabilities.permitted_mask()
    if security.seccomp != "default" or security.privileged:
        return mask, None
    names = {name for name, number in capabilities.CAPABILITIES.items() if mask & (1 << number)}
    return mask, seccomp.program(names)


def apply_security(security, exec_user, mask, seccomp_program):
    """Load the seccomp program, become `exec_user` with the capabilities in `mask`, and set no_new_privs."""
    # Loaded while CAP_SYS_ADMIN is still effective, so the filter needs no
    # no_new_privs (runc's order). Every call from here to execve is allowed.
    if seccomp_program is not None:
        seccomp.install(seccomp_program)
    _switch_user(exec_user, mask)
    if security.no_new_privileges:
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)


def _set_ulimits(ulimits):
    # Only the current hard limit or less can be asked for: raising a hard
    # limit needs CAP_SYS_RESOURCE, which root lacks on some hosts.
    for name, (soft, hard) in ulimits.items():
        number = getattr(resource, f"RLIMIT_{name.upper()}")
        try:
            resource.setrlimit(number, (soft, hard))
        except (OSError, ValueError) as error:
            current = resource.getrlimit(number)[1]
            raise ContainerError(f"cannot set --ulimit {name}={soft}:{hard}: {error}; the current hard limit is "
                                 f"{'unlimited' if current == resource.RLIM_INFINITY else current}") from None


def _detach_from_launcher(kill_with_parent):
    # A new session keeps the launcher's terminal signals (Ctrl-C) away
    # from the container, as runc does.
    os.setsid()

    # Python ignores SIGPIPE and SIGXFSZ, and execve(2) keeps ignored
    # signals ignored, so restore the defaults that programs expect.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    # The launcher forked with the interrupt signals blocked, and any that its
    # process group received since then were meant for the launcher.
    discard_interrupts()

    if kill_with_parent:
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
        # NOTE: if the launcher died before the prctl call, the signal never
        # comes. The launcher is blocked reading the error pipe until exec,
        # so only a launcher killed in these few milliseconds leaks one.


def _unshare_namespaces(spec):
    # The PID namespace was entered at fork time by `container.start`.
    flags = syscalls.CLONE_NEWNS | syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWIPC
    if spec.netns_path:
        # --network container:NAME shares another container's network namespace.
        try:
            netns = os.open(spec.netns_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:
            raise ContainerError(f"cannot open network namespace {spec.netns_path}: {error.strerror}; "
                                 "is the container whose network is shared still running?") from None
        syscalls.setns(netns, syscalls.CLONE_NEWNET)
        os.close(netns)
    elif spec.network != "host":
        flags |= syscalls.CLONE_NEWNET
    syscalls.unshare(flags)


def _make_cwd(cwd):
    # Docker creates a missing working directory instead of failing.
    try:
        os.makedirs(cwd, 0o755, exist_ok=True)
    except OSError as error:
        raise ContainerError(f"cannot create working directory {cwd}: {error.strerror}") from None


def _dup_stdio(stdio):
    # Copy every source above 2 first, so that a source that is itself 0, 1
    # or 2 is not overwritten by an earlier dup2.
    copies = [None if fd is None else fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in stdio]
    for target, copy in enumerate(copies):
        if copy is not None:
            os.dup2(copy, target)


def _close_other_fds_on_exec():
    # Only fds 0-2 reach the program. Python opens files close-on-exec, but
    # a caller may have made some inheritable.
    try:
        syscalls.close_range_cloexec(3)
    except syscalls.SyscallError:
        # close_range(2) with CLOSE_RANGE_CLOEXEC needs Linux 5.11.
        for name in os.listdir("/proc/self/fd"):
            if int(name) > 2:
                try:
                    os.set_inheritable(int(name), False)
                except OSError:
                    pass


def _switch_user(exec_user, mask):
    # The bounding set can be changed only while CAP_SETPCAP is effective,
    # so it is dropped before setuid(2) clears a non-root user's sets.
    capabilities.drop_bounding_set(mask)
    capabilities.clear_ambient()

    if setgroups_allowed():
        os.setgroups(exec_user.groups)
    else:
        # A user namespace with a single-id map denies setgroups(2), so the
        # process keeps the launcher's groups, which show as unmapped ids.
        log.debug("setgroups is denied in this user namespace; not setting groups %s", exec_user.groups)
    try:
        os.setgid(exec_user.gid)
        os.setuid(exec_user.uid)
    except OSError as error:
        if error.errno != errno.EINVAL:
            raise
        raise ContainerError(
            f"cannot switch to uid {exec_user.uid} gid {exec_user.gid}: the id is not mapped in this user "
            "namespace; add a range for your user to /etc/subuid and /etc/subgid, or run as root"
        ) from None
    capabilities.set_process_capabilities(mask, exec_user.uid)


def _chdir(cwd):
    try:
        os.chdir(cwd)
    except OSError as error:
        raise ContainerError(f"chdir to working directory {cwd!r} failed: {error.strerror}") from None


def _exec_error(message, exit_code):
    error = ContainerError(message)
    error.exit_code = exit_code
    return error


def find_executable(name, env):
    """Return the path of `name`, searched in env's PATH unless it contains "/", as Go's exec.LookPath does.

    Raises ContainerError with Docker's message and exit code: 127 for a
    missing program, 126 for one that cannot be executed.
    """
    if "/" in name:
        _check_executable(name, name)
        return name

    path_value = ""
    for item in env:
        if item.startswith("PATH="):
            path_value = item[5:]
    for directory in path_value.split(":"):
        candidate = os.path.join(directory or ".", name)
        try:
            _check_executable(candidate, name)
        except ContainerError:
            continue
        return candidate
    raise _exec_error(f'exec: "{name}": executable file not found in $PATH', 127)


def _check_executable(path, name):
    try:
        info = os.stat(path)
    except OSError as error:
        raise _exec_error(f'exec: "{name}": stat {path}: {error.strerror.lower()}', 127) from None
    if stat.S_ISDIR(info.st_mode) or not info.st_mode & 0o111:
        raise _exec_error(f'exec: "{name}": permission denied', 126)


def execve(args, env):
    """Replace the process with `args`, mapping failures to Docker's exit codes."""
    path = find_executable(args[0], env)
    try:
        os.execve(path, args, dict(item.partition("=")[::2] for item in env))
    except OSError as error:
        exit_code = 127 if error.errno == errno.ENOENT else 126
        raise _exec_error(f'exec: "{args[0]}": {error.strerror.lower()}', exit_code) from None
