"""Ctrl-C that arrives while a launcher forks a container's process."""

import subprocess
import sys

SCRIPT = """
import os, signal, sys
from layerlab.engine.runtime.forking import fork_with_interrupts_blocked

# An at-fork callback that runs Python code when the signal arrives, as logging's do.
os.register_at_fork(after_in_parent=lambda: os.kill(os.getpid(), signal.SIGINT))
try:
    pid = fork_with_interrupts_blocked()
    if pid == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        import time
        time.sleep(30)
        os._exit(0)
except KeyboardInterrupt:
    print("interrupted")
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        print("child reaped")
    sys.exit(0)
print("not interrupted")
os.kill(pid, signal.SIGKILL)
"""

CHILD_SCRIPT = """
import os, signal, sys, time
from layerlab.engine.runtime.forking import discard_interrupts, fork_with_interrupts_blocked

pid = fork_with_interrupts_blocked()
if pid == 0:
    # A Ctrl-C for the whole process group arrives before the child is ready for it.
    os.kill(os.getpid(), signal.SIGINT)
    discard_interrupts()
    time.sleep(0.2)
    os._exit(7)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""


def run_script(script):
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)


def test_sigint_during_fork_callbacks_raises():
    result = run_script(SCRIPT)

    assert "Exception ignored" not in result.stderr
    assert result.stdout.splitlines() == ["interrupted", "child reaped"]


def test_child_discards_group_sigint():
    result = run_script(CHILD_SCRIPT)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "7\n"
