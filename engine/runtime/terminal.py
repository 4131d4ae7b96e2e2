"""The pseudo-terminal of `run -t`.

The container's init opens /dev/ptmx of its own devpts instance (mounted
with newinstance), so the terminal is /dev/pts/0 inside, as in Docker. A
pty made on the host's devpts would have a name that the container cannot
see in its /dev/pts. The slave is also bound onto /dev/console, as runc
does. The init sends the master to the launcher over a unix socket
(SCM_RIGHTS), as runc's --console-socket, makes the slave its controlling
terminal and its fds 0-2, and executes the program.

`exec -t` gets a terminal the same way, from the process exec'd in the
container, which opens the next /dev/pts/N of the container's devpts.

The launcher copies between the master and its own stdin and stdout, with
its terminal in raw mode so that Ctrl-C and the like reach the container's
line discipline.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import selectors
import signal
import socket
import struct
import termios
import tty

from layerlab.engine.errors import ContainerError
from layerlab.engine.runtime import syscalls

log = logging.getLogger(__name__)

# <asm-generic/ioctls.h>
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431

_READ_SIZE = 65536
# How long output may pause after the process on the terminal exited before the relay stops.
_DRAIN_SECONDS = 0.2


def open_console(console_socket):
    """Create the container's terminal, send its master on `console_socket`, and return the slave fd.

    Runs in the container's init after pivot_root, so /dev is the
    container's. The caller makes the slave the controlling terminal and
    stdio with `attach_slave`.
    """
    return _open_and_send(console_socket, bind_console=True)


def open_exec_terminal(console_socket):
    """Create a terminal for a process exec'd in a running container, send its master on `console_socket`.

    Runs in the exec'd process after it joined the container's mount
    namespace, so /dev/ptmx is the container's devpts instance and the
    terminal is the next free /dev/pts/N there, as with runc exec. Returns
    the slave fd for `attach_slave`. /dev/console stays the init's.
    """
    return _open_and_send(console_socket, bind_console=False)


def _open_and_send(console_socket, *, bind_console):
    try:
        master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as error:
        raise ContainerError(f"cannot allocate a pseudo-terminal: open /dev/ptmx: {error.strerror}") from None
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
        slave_path = f"/dev/pts/{number}"
        slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)

        if bind_console:
            # /dev/console is where programs such as getty and systemd write,
            # so it is the same terminal, as in runc.
            console = "/dev/console"
            if not os.path.exists(console):
                os.close(os.open(console, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            syscalls.mount(slave_path, console, None, syscalls.MS_BIND)

        with socket.socket(fileno=os.dup(console_socket)) as channel:
            socket.send_fds(channel, [b"t"], [master])
    finally:
        os.close(master)
        os.close(console_socket)
    return slave


def attach_slave(slave):
    """Make `slave` the calling session leader's controlling terminal and its fds 0, 1 and 2."""
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)


def receive_master(channel):
    """Return the master fd that the container's init sent on the socket `channel`."""
    message, fds, _, _ = socket.recv_fds(channel, 1, 1)
    if not fds:
        raise ContainerError("the container exited before sending its pseudo-terminal")
    os.set_inheritable(fds[0], False)
    return fds[0]


def copy_window_size(source_fd, master):
    """Give the container's terminal the size of our terminal on `source_fd`, if it is one."""
    try:
        size = fcntl.ioctl(source_fd, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)
    except OSError:
        pass


@contextlib.contextmanager
def raw_mode(fd):
    """Put the terminal on `fd` in raw mode for the block; does nothing when `fd` is no terminal."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    # TCSANOW keeps input typed before the container started, which TCSAFLUSH would discard.
    tty.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def relay_session(master, stdin, stdout, interactive, exit_fd=None):
    """Relay the terminal `master` for a foreground process, then close it.

    stdin and stdout are file descriptors, None for ours. Only with
    `interactive` does input reach the terminal, and only then is our
    terminal put in raw mode, as the docker CLI does. See `relay` for
    `exit_fd`.
    """
    input_fd = None
    if interactive:
        input_fd = 0 if stdin is None else stdin

    try:
        with raw_mode(input_fd) if input_fd is not None else contextlib.nullcontext():
            relay(master, input_fd, 1 if stdout is None else stdout, exit_fd)
    finally:
        os.close(master)


def relay(master, stdin_fd, stdout_fd, exit_fd=None):
    """Copy the container's terminal output to `stdout_fd`, and `stdin_fd` (or None) to it, until it closes.

    With `exit_fd` (a pidfd of the process on the terminal) the copy also
    ends once that process has exited and its output stopped, because a
    background child of an exec'd shell may keep the terminal open.
    """
    copy_window_size(stdin_fd if stdin_fd is not None else stdout_fd, master)
    previous = None
    if stdin_fd is not None and os.isatty(stdin_fd):
        previous = signal.signal(signal.SIGWINCH, lambda *_: copy_window_size(stdin_fd, master))

    selector = selectors.DefaultSelector()
    selector.register(master, selectors.EVENT_READ)
    reading_input = stdin_fd is not None
    if reading_input:
        selector.register(stdin_fd, selectors.EVENT_READ)
    if exit_fd is not None:
        selector.register(exit_fd, selectors.EVENT_READ)
    timeout = None
    try:
        while True:
            ready = selector.select(timeout)
            if not ready:
                # The process has exited and nothing came within the drain time.
                return
            for key, _ in ready:
                if key.fd == master:
                    data = _read(master)
                    if not data:
                        return
                    _write_all(stdout_fd, data)
                elif key.fd == exit_fd:
                    # Output written just before the exit may still be on its
                    # way to the master, so read until it has been quiet a while.
                    selector.unregister(exit_fd)
                    if reading_input:
                        selector.unregister(stdin_fd)
                        reading_input = False
                    timeout = _DRAIN_SECONDS
                elif reading_input:
                    data = _read(stdin_fd)
                    if not data:
                        # End of input: send the terminal's EOF character
                        # (Ctrl-D), as closing a real terminal's input would.
                        _write_all(master, bytes([termios.tcgetattr(master)[6][termios.VEOF][0]]))
                        selector.unregister(stdin_fd)
                        reading_input = False
                        continue
                    _write_all(master, data)
    finally:
        selector.close()
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)


def _read(fd):
    try:
        return os.read(fd, _READ_SIZE)
    except OSError as error:
        # The master returns EIO once every slave fd is closed.
        if error.errno == errno.EIO:
            return b""
        raise


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
