"""Timing, clean-up and leftover checks shared by the benchmark cases.

Every case runs its tools round-robin: one warm-up round, then each repeat
runs every tool once in turn, so a load spike on a shared host slows all
tools of a round alike instead of one tool's whole series.
"""

import os
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


class ToolUnavailable(Exception):
    """A tool that is missing or cannot run on this host, with the reason as its message."""


@dataclass
class Series:
    """The measured values of one tool in one case (seconds, or KiB for memory)."""

    label: str
    values: list = field(default_factory=list)
    error: str | None = None
    unit: str = "s"

    @property
    def median(self):
        return statistics.median(self.values) if self.values else None

    @property
    def minimum(self):
        return min(self.values) if self.values else None

    def as_dict(self):
        return {
            "label": self.label, "unit": self.unit, "values": self.values,
            "median": self.median, "min": self.minimum, "error": self.error,
        }


def run_checked(command, env=None, cwd=None, timeout=900):
    """Run `command` with its output captured; raise RuntimeError with its stderr if it fails."""
    result = subprocess.run(
        [str(part) for part in command], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    if result.returncode != 0:
        tail = " ".join(result.stderr.strip().splitlines()[-2:])
        raise RuntimeError(f"{Path(str(command[0])).name} exited with status {result.returncode}: {tail}")
    return result.stdout


def timed(command, env=None, cwd=None):
    """Return the wall-clock seconds `command` takes; raise RuntimeError if it fails."""
    started = time.perf_counter()
    run_checked(command, env=env, cwd=cwd)
    return time.perf_counter() - started


def peak_rss_kib(command, env=None, cwd=None):
    """Return the maximum resident set size of `command` in KiB, from GNU time's %M.

    wait4() reports the largest process among the command and the children
    it waited for, so daemons and double-forked monitors are not counted.
    """
    result = subprocess.run(
        ["/usr/bin/time", "-f", "peak-rss-kib %M", *map(str, command)], env=env, cwd=cwd,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900, check=False,
    )
    lines = result.stderr.strip().splitlines()
    if result.returncode != 0 or not lines or not lines[-1].startswith("peak-rss-kib "):
        tail = " ".join(lines[-2:])
        raise RuntimeError(f"{Path(str(command[0])).name} exited with status {result.returncode}: {tail}")
    return int(lines[-1].split()[1])


def round_robin(trials, repeats, warmup=1, unit="s"):
    """Run each trial `warmup + repeats` times, interleaved; return {label: Series}.

    `trials` maps a label to a callable that performs one trial and returns
    its measured value; setup that must not be timed happens inside the
    callable, outside its own timer. A trial that raises is recorded as an
    error and not run again.
    """
    series = {label: Series(label, unit=unit) for label in trials}
    for round_number in range(warmup + repeats):
        for label, trial in trials.items():
            if series[label].error:
                continue
            try:
                value = trial()
            except (RuntimeError, ToolUnavailable, subprocess.TimeoutExpired, OSError) as error:
                series[label].error = str(error).strip()[:200] or type(error).__name__
                continue
            if round_number >= warmup:
                series[label].values.append(value)
    return series


class Cleanup:
    """A stack of clean-up callbacks run in reverse order, each one even if another fails."""

    def __init__(self):
        self.callbacks = []
        self.errors = []

    def push(self, description, callback, *args):
        self.callbacks.append((description, callback, args))

    def run(self):
        while self.callbacks:
            description, callback, args = self.callbacks.pop()
            try:
                callback(*args)
            except Exception as error:  # noqa: BLE001 - keep cleaning up the rest
                self.errors.append(f"{description}: {error}")
        return self.errors


def mounts_under(prefixes):
    """Return the mount points below any of `prefixes`, from /proc/self/mountinfo."""
    prefixes = [str(prefix).rstrip("/") for prefix in prefixes]
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as table:
        for line in table:
            target = line.split()[4].encode().decode("unicode_escape")
            if any(target == prefix or target.startswith(prefix + "/") for prefix in prefixes):
                found.append(target)
    return found


def processes_mentioning(texts):
    """Return (pid, command line) of the processes whose command line contains any of `texts`."""
    needles = [text.encode() for text in texts]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if any(needle in argv for needle in needles):
            found.append((int(entry.name), argv.decode(errors="replace").strip()))
    return found


def unmount_all(prefixes):
    """Lazily unmount every mount below `prefixes`, deepest first; return what was mounted."""
    targets = sorted(mounts_under(prefixes), key=len, reverse=True)
    for target in targets:
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)
    return targets
