"""Forking a container's processes without losing the launcher's Ctrl-C."""

import os
import signal

# Signals that stop a launcher (Ctrl-C, kill, a closed terminal).
INTERRUPT_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def fork_with_interrupts_blocked():
    """Fork as os.fork does, with INTERRUPT_SIGNALS blocked during the fork; return the child's PID (0 in the child).

    os.fork runs Python at-fork callbacks (logging registers some), and
    Python prints and drops any exception raised in them, so a
    KeyboardInterrupt raised there would be lost. With the signals
    blocked, the parent gets a pending signal when it restores its mask,
    as a KeyboardInterrupt from pthread_sigmask, and still has the child's
    PID in hand to kill it. The child keeps the signals blocked, and
    `discard_interrupts` drops what the process group received meanwhile.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPT_SIGNALS)
    pid = os.fork()
    if pid != 0:
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        except BaseException:
            kill_and_reap(pid)
            raise
    return pid


def discard_interrupts():
    """Drop INTERRUPT_SIGNALS that are pending in a forked child and unblock every signal.

    Setting a signal to SIG_IGN discards its pending instances. The
    default dispositions are what the container's program expects.
    """
    for number in INTERRUPT_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
        signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def kill_and_reap(pid):
    """Kill the child `pid` with SIGKILL and reap it."""
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
