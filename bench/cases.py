"""The benchmark cases. Each returns a CaseResult; none asserts on time.

Targets come from the project's speed goals: half of BuildKit's cold
build time, BuildKit's cached time from the CLI and a third of it from a warm
kernel, a quarter of `podman run`, and twice `docker commit`'s throughput.
The reference numbers behind them were measured on the project's 2-core VMs:
BuildKit 1.3 s cold and 0.07 s cached for 20 RUN steps, 2.5 s for the COPY
case, `podman run --rm busybox true` 0.18 s, `docker commit` of 500 MB 2.1 s.
"""

import os
from dataclasses import dataclass, field

from harness import ToolUnavailable, peak_rss_kib, round_robin, run_checked, timed

RUN_STEPS = 20
SMALL_FILES = 1000
SMALL_FILE_BYTES = 1024
BIG_FILE_BYTES = 100 * 1024 * 1024
COMMIT_FILES = 50
COMMIT_FILE_BYTES = 10 * 1024 * 1024
COMMIT_MIB = COMMIT_FILES * COMMIT_FILE_BYTES / 2**20


@dataclass
class CaseResult:
    name: str
    title: str
    series: dict
    primary: str                                 # label of the layerlab row that ratios divide
    targets: dict = field(default_factory=dict)  # layerlab label -> (target value, how it is derived)
    notes: list = field(default_factory=list)
    megabytes: float | None = None               # set for throughput cases
    numerators: dict = field(default_factory=dict)  # other label -> layerlab label, when not `primary`

    def as_dict(self):
        return {
            "name": self.name, "title": self.title, "primary": self.primary,
            "series": {label: series.as_dict() for label, series in self.series.items()},
            "targets": {label: {"value": value, "basis": basis} for label, (value, basis) in self.targets.items()},
            "notes": self.notes, "megabytes": self.megabytes, "numerators": self.numerators,
        }


def failing_trial(error):
    """Return a trial that raises `error`, so the table shows why a tool has no values."""
    def trial():
        raise error
    return trial


def add_if(trials, tool, label, trial):
    """Add `trial` under `label` if `tool` was set up, else a trial that raises its ToolUnavailable."""
    if isinstance(tool, ToolUnavailable):
        trials[label] = failing_trial(tool)
    else:
        trials[label] = trial


def run_case(tools, repeats):
    layerlab, containers, docker = tools.layerlab, tools.containers, tools.docker
    warm = tools.warm
    trials = {
        "layerlab --network none": lambda: layerlab.time("run", "--rm", "--network", "none", "busybox", "true"),
        "layerlab (default network)": lambda: layerlab.time("run", "--rm", "busybox", "true"),
        "layerlab warm --network none": lambda: warm.time("run", "--rm", "--network", "none", "busybox", "true"),
    }
    add_if(trials, containers, "podman 4.3 (runc, overlay)", lambda: timed(
        containers.podman("run", "--rm", "--network", "none", *containers.limits, "busybox", "true")))
    add_if(trials, docker, "docker 20.10", lambda: docker.time("run", "--rm", "--network", "none", "busybox", "true"))
    add_if(trials, tools.runc, "runc run (plain dir)", lambda: tools.runc.time_run())
    add_if(trials, tools.crun, "crun run (plain dir)", lambda: tools.crun.time_run())

    series = round_robin(trials, repeats)
    return CaseResult(
        "run", "run --rm busybox true", series, "layerlab --network none",
        targets={
            "layerlab --network none": (0.18 / 4, "podman 0.18 s / 4"),
            "layerlab warm --network none": (0.18 / 4, "podman 0.18 s / 4"),
        },
        notes=["podman and docker run with --network none; layerlab's default network is its own default."],
    )


def write_run_steps(context):
    context.mkdir(parents=True)
    lines = ["FROM busybox"] + [f"RUN echo step{i} > /step{i}" for i in range(1, RUN_STEPS + 1)]
    (context / "Dockerfile").write_text("\n".join(lines) + "\n")


def builder_trials(tools, context, tag, cold):
    """Trials that build `context` as `tag`, with --no-cache when `cold`."""
    layerlab, containers, docker, warm = tools.layerlab, tools.containers, tools.docker, tools.warm
    no_cache = ["--no-cache"] if cold else []
    trials = {
        "layerlab CLI": lambda: layerlab.time("build", "-q", "--network", "none", *no_cache, "-t", tag, str(context)),
        "layerlab warm": lambda: warm.time("build", "-q", "--network", "none", *no_cache, "-t", tag, str(context)),
    }
    for label, buildkit in (("docker BuildKit", True), ("docker classic", False)):
        add_if(trials, docker, label, lambda buildkit=buildkit: docker.time(
            "build", "-q", "--network", "none", *no_cache, "-t", tag, str(context), buildkit=buildkit))
    add_if(trials, containers, "buildah 1.28 bud --layers", lambda: timed(
        containers.buildah_build(context, tag, *no_cache)))
    return trials


def prime_caches(tools, context, tag):
    """Build once with every builder so that the cached case hits."""
    for trial in builder_trials(tools, context, tag, cold=False).values():
        try:
            trial()
        except (RuntimeError, ToolUnavailable):
            pass  # the timed rounds record the error


def build_cold_case(tools, repeats):
    context = tools.base / "run-steps"
    write_run_steps(context)
    series = round_robin(builder_trials(tools, context, "bench-steps", cold=True), repeats)
    return CaseResult(
        "build-cold", f"{RUN_STEPS} tiny RUN steps, cold (--no-cache)", series, "layerlab CLI",
        targets={"layerlab CLI": (1.3 / 2, "BuildKit 1.3 s / 2"), "layerlab warm": (1.3 / 2, "BuildKit 1.3 s / 2")},
    )


def build_cached_case(tools, repeats):
    context = tools.base / "run-steps"
    if not context.exists():
        write_run_steps(context)
    prime_caches(tools, context, "bench-steps")
    series = round_robin(builder_trials(tools, context, "bench-steps", cold=False), repeats)
    return CaseResult(
        "build-cached", f"{RUN_STEPS} tiny RUN steps, all cached", series, "layerlab CLI",
        targets={"layerlab CLI": (0.07, "BuildKit 0.07 s"), "layerlab warm": (0.07 / 3, "BuildKit 0.07 s / 3")},
    )


def write_copy_context(context):
    small = context / "small"
    small.mkdir(parents=True)
    for index in range(SMALL_FILES):
        (small / f"file{index:04d}.txt").write_bytes(os.urandom(SMALL_FILE_BYTES))
    with open(context / "big.bin", "wb") as big:
        for _ in range(BIG_FILE_BYTES // 2**20):
            big.write(os.urandom(2**20))
    (context / "Dockerfile").write_text("FROM busybox\nCOPY . /data/\n")


def copy_case(tools, repeats):
    context = tools.base / "copy-context"
    write_copy_context(context)
    series = round_robin(builder_trials(tools, context, "bench-copy", cold=True), repeats)
    return CaseResult(
        "copy-cold", f"COPY {SMALL_FILES} files of {SMALL_FILE_BYTES} B + one of 100 MiB, cold", series,
        "layerlab CLI",
        targets={"layerlab CLI": (2.5 / 2, "BuildKit 2.5 s / 2"), "layerlab warm": (2.5 / 2, "BuildKit 2.5 s / 2")},
    )


FILL_SCRIPT = (
    f"for i in $(seq 1 {COMMIT_FILES}); do "
    f"head -c {COMMIT_FILE_BYTES} /dev/urandom > /fill$i || exit 1; done"
)


def commit_case(tools, repeats):
    """Commit a container holding 500 MiB of new random files; the fill is not timed."""
    layerlab, containers, docker = tools.layerlab, tools.containers, tools.docker
    trials = {}
    try:
        layerlab.run("run", "--name", "bench-fill", "--network", "none", "busybox", "sh", "-c", FILL_SCRIPT)
        trials["layerlab CLI"] = lambda: layerlab.time("commit", "bench-fill", "bench-committed")
    except RuntimeError as error:
        trials["layerlab CLI"] = failing_trial(error)

    def docker_trial():
        return docker.time("commit", "bench-fill", "bench-committed")

    if not isinstance(docker, ToolUnavailable):
        docker.run("run", "--name", "bench-fill", "--network", "none", "busybox", "sh", "-c", FILL_SCRIPT)
    add_if(trials, docker, "docker 20.10", docker_trial)

    if not isinstance(containers, ToolUnavailable):
        run_checked(containers.podman("run", "--name", "bench-fill", "--network", "none", *containers.limits,
                                      "busybox", "sh", "-c", FILL_SCRIPT))
    add_if(trials, containers, "podman 4.3", lambda: timed(
        containers.podman("commit", "-q", "bench-fill", "bench-committed")))

    series = round_robin(trials, repeats)
    return CaseResult(
        "commit", f"commit of {COMMIT_MIB:.0f} MiB of new files", series, "layerlab CLI",
        targets={"layerlab CLI": (2.1 / 2, "docker commit 2.1 s / 2 (twice its MB/s)")},
        megabytes=COMMIT_FILES * COMMIT_FILE_BYTES / 1e6,
        notes=["Each repeat commits the same container again to the same tag."],
    )


def memory_case(tools, repeats):
    layerlab, containers = tools.layerlab, tools.containers
    context = tools.base / "run-steps"
    if not context.exists():
        write_run_steps(context)
    trials = {
        "layerlab run --network none": lambda: peak_rss_kib(
            layerlab("run", "--rm", "--network", "none", "busybox", "true"), env=layerlab.env),
        "layerlab build (20 RUN, cold)": lambda: peak_rss_kib(
            layerlab("build", "-q", "--no-cache", "--network", "none", "-t", "bench-steps", str(context)), env=layerlab.env),
    }
    add_if(trials, containers, "podman run", lambda: peak_rss_kib(
        containers.podman("run", "--rm", "--network", "none", *containers.limits, "busybox", "true")))
    add_if(trials, containers, "buildah bud (20 RUN, cold)", lambda: peak_rss_kib(
        containers.buildah_build(context, "bench-steps", "--no-cache")))
    series = round_robin(trials, repeats, unit="KiB")
    return CaseResult(
        "memory", "peak RSS (largest process the command waited for)", series, "layerlab run --network none",
        numerators={
            "podman run": "layerlab run --network none",
            "buildah bud (20 RUN, cold)": "layerlab build (20 RUN, cold)",
        },
        notes=["docker is left out: its client does none of the work, and dockerd and containerd live on."],
    )


CASES = {
    "run": run_case,
    "build-cold": build_cold_case,
    "build-cached": build_cached_case,
    "copy": copy_case,
    "commit": commit_case,
    "memory": memory_case,
}
