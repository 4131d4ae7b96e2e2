"""Side-by-side benchmarks of layerlab against podman, buildah, docker, runc and crun.

Usage (as root): python3 bench/run.py [--only NAME] [--repeat N]

Prints one table per case with the median and minimum of N repeats after
one warm-up round. Its ratio column is the layerlab row's value divided by
each other row's value, so below 1 means layerlab is faster or smaller.
Each layerlab row with a speed goal is also compared with that target.
Writes every value to bench/results/<UTC date and time>.json and never
asserts on time.

Everything the bench starts (a private dockerd, podman and buildah storage,
runc containers, layerlab stores) lives in temporary directories and is
removed at the end, also after Ctrl-C or SIGTERM; the bench then reports
any mount or process still mentioning those directories.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import CASES  # noqa: E402
from harness import Cleanup, ToolUnavailable, mounts_under, processes_mentioning  # noqa: E402
from report import render_case  # noqa: E402
import tools as tooling  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


class Tools:
    """The tools of one bench run, each replaced by a ToolUnavailable if its set-up failed."""

    def __init__(self, base, cleanup):
        self.base = base
        self.rootfs_tar = base / "busybox-rootfs.tar"
        from layerlab.engine.rootfs_builders import build_busybox_rootfs

        self.rootfs = build_busybox_rootfs(self.rootfs_tar)

        self.layerlab = tooling.Layerlab(base)
        cleanup.push("layerlab store", self.layerlab.cleanup)
        self.layerlab.setup()
        self.warm = self.layerlab.start_worker()

        self.containers = self.try_setup(
            "podman/buildah storage", cleanup, lambda: tooling.Containers(base),
            lambda tool: tool.setup(self.rootfs_tar))
        self.docker = self.try_setup(
            "private dockerd", cleanup, tooling.Docker, lambda tool: tool.setup(self.rootfs_tar))

        bundle = base / "bundle"
        try:
            tooling.make_bundle(self.rootfs_tar, bundle)
            bundle_error = None
        except (RuntimeError, ToolUnavailable) as error:
            bundle_error = ToolUnavailable(f"no OCI bundle: {error}")
        self.runc = bundle_error or self.try_setup(
            "runc containers", cleanup, lambda: tooling.OciRuntime("runc", bundle, base), lambda tool: None)
        self.crun = bundle_error or self.try_setup(
            "crun containers", cleanup, lambda: tooling.OciRuntime("crun", bundle, base), lambda tool: None)

    @staticmethod
    def try_setup(description, cleanup, make, setup):
        try:
            tool = make()
        except ToolUnavailable as error:
            return error
        cleanup.push(description, tool.cleanup)
        try:
            setup(tool)
        except (RuntimeError, TimeoutError, OSError) as error:
            return ToolUnavailable(f"set-up failed: {str(error).strip().splitlines()[-1][:200]}")
        return tool

    def versions(self):
        return {
            "layerlab": tooling.tool_version(self.layerlab("version")),
            "podman": tooling.tool_version(["podman", "--version"]),
            "buildah": tooling.tool_version(["buildah", "--version"]),
            "docker": tooling.tool_version(["dockerd", "--version"]),
            "runc": tooling.tool_version(["runc", "--version"]),
            "crun": tooling.tool_version(["crun", "--version"]),
        }


def machine():
    uname = platform.uname()
    return {
        "kernel": f"{uname.system} {uname.release}",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


def raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(CASES), metavar="NAME",
                        help=f"run only this case (repeatable): {', '.join(CASES)}")
    parser.add_argument("--repeat", type=int, default=5, help="timed repeats per tool after one warm-up (default 5)")
    return parser.parse_args(argv)


def main(argv=None):
    options = parse_arguments(argv)
    if os.geteuid() != 0:
        print("bench/run.py must run as root: layerlab, podman, docker and runc run containers", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, raise_interrupt)

    started = datetime.datetime.now(datetime.timezone.utc)
    base = Path(tempfile.mkdtemp(prefix="layerlab-bench-", dir="/var/tmp"))
    cleanup = Cleanup()
    cleanup.push("bench directory", shutil.rmtree, base, True)
    report = {"started": started.isoformat(timespec="seconds"), "machine": machine(), "repeats": options.repeat}
    results = []
    interrupted = False
    try:
        tools = Tools(base, cleanup)
        report["versions"] = tools.versions()
        report["busybox_rootfs_sha256"] = tools.rootfs["tar_sha256"]
        for name in options.only or CASES:
            case_started = time.monotonic()
            result = CASES[name](tools, options.repeat)
            result.notes.append(f"case took {time.monotonic() - case_started:.0f} s in all")
            results.append(result)
            print(render_case(result), flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted; cleaning up", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the clean-up
        errors = cleanup.run()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    leftovers = [f"mount {target}" for target in mounts_under([base])]
    leftovers += [f"process {pid}: {command[:120]}" for pid, command in processes_mentioning([str(base)])]
    for line in errors + leftovers:
        print(f"left behind: {line}", file=sys.stderr)

    report["machine"]["load_average_after"] = os.getloadavg()
    report["cases"] = [result.as_dict() for result in results]
    report["cleanup_errors"] = errors
    report["leftovers"] = leftovers
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{started.strftime('%Y-%m-%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {path}")
    if interrupted:
        return 130
    return 1 if leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
