"""The build cache, as Docker's classic builder keys it, on a real busybox image."""

import os


from layerlab.engine.api import Engine
from layerlab.engine.build import BuildRequest, Builder
from layerlab.engine.build import events

BASE = """\
FROM busybox
ENV GREETING=hello
RUN echo $GREETING > /greeting
RUN echo two > /two
CMD ["cat", "/greeting"]
"""


def steps_of(output):
    """Split `build` output into (instruction, cached, ran) per step."""
    steps = []
    for line in output.splitlines():
        if line.startswith("Step "):
            steps.append([line.split(" : ", 1)[1], False, False])
        elif line == " ---> Using cache":
            steps[-1][1] = True
        elif line.startswith(" ---> Running in "):
            steps[-1][2] = True
    return [tuple(step) for step in steps]


def cached_flags(output):
    return [cached for _, cached, _ in steps_of(output)][1:]


def image_id_of(output):
    return output.strip().splitlines()[-2].removeprefix("Successfully built ")


def build(cli, context, dockerfile, *flags):
    (context / "Dockerfile").write_text(dockerfile)
    result = cli("build", *flags, "-t", "cached", str(context))
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_rebuild_uses_cache(busybox, cli, context):
    first = build(cli, context, BASE)
    second = build(cli, context, BASE)

    assert cached_flags(first) == [False, False, False, False]
    assert cached_flags(second) == [True, True, True, True]
    assert image_id_of(second) == image_id_of(first)


def test_rebuild_runs_nothing(busybox, cli, context):
    build(cli, context, BASE)
    second = build(cli, context, BASE)

    assert "Running in" not in second
    assert "Successfully tagged cached:latest" in second


def test_changed_cmd_reruns_only_it(busybox, cli, context):
    first = build(cli, context, BASE)
    second = build(cli, context, BASE.replace('CMD ["cat", "/greeting"]', 'CMD ["cat", "/two"]'))

    assert cached_flags(second) == [True, True, True, False]
    assert image_id_of(second) != image_id_of(first)


def test_spaces_after_keyword_hit(busybox, cli, context):
    build(cli, context, BASE)
    second = build(cli, context, BASE.replace("RUN echo $GREETING", "RUN     echo $GREETING"))

    assert cached_flags(second) == [True, True, True, True]


def test_spaces_inside_command_miss(busybox, cli, context):
    build(cli, context, BASE)
    second = build(cli, context, BASE.replace("RUN echo $GREETING", "RUN echo  $GREETING"))

    assert cached_flags(second) == [True, False, False, False]
    assert [ran for _, _, ran in steps_of(second)] == [False, False, True, True, False]


def test_no_cache_runs_all(busybox, cli, context):
    build(cli, context, BASE)
    second = build(cli, context, BASE, "--no-cache")

    assert cached_flags(second) == [False, False, False, False]
    assert second.count("Running in") == 2


def test_no_cache_refreshes_cache(busybox, cli, context):
    build(cli, context, BASE)
    rebuilt = build(cli, context, BASE, "--no-cache")
    third = build(cli, context, BASE)

    assert cached_flags(third) == [True, True, True, True]
    assert image_id_of(third) == image_id_of(rebuilt)


def test_changed_env_misses_later_steps(busybox, cli, context):
    build(cli, context, BASE)
    second = build(cli, context, BASE.replace("GREETING=hello", "GREETING=bye"))

    assert cached_flags(second) == [False, False, False, False]


COPY_FILE = """\
FROM busybox
COPY data.txt /data.txt
RUN cat /data.txt
"""


def test_copy_touch_hits(busybox, cli, context):
    data = context / "data.txt"
    data.write_text("one\n")
    build(cli, context, COPY_FILE)

    os.utime(data, (1_000_000_000, 1_000_000_000))
    second = build(cli, context, COPY_FILE)

    assert cached_flags(second) == [True, True]


def test_copy_content_misses(busybox, cli, context):
    data = context / "data.txt"
    data.write_text("one\n")
    build(cli, context, COPY_FILE)

    data.write_text("two\n")
    second = build(cli, context, COPY_FILE)

    assert cached_flags(second) == [False, False]
    assert "two" in second.splitlines()


def test_copy_same_size_content_misses(busybox, cli, context):
    data = context / "data.txt"
    data.write_text("aaaa\n")
    build(cli, context, COPY_FILE)
    stat = data.stat()

    data.write_text("bbbb\n")
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = build(cli, context, COPY_FILE)

    assert cached_flags(second) == [False, False]


def test_copy_chmod_misses(busybox, cli, context):
    data = context / "data.txt"
    data.write_text("one\n")
    data.chmod(0o644)
    build(cli, context, COPY_FILE)

    data.chmod(0o755)
    second = build(cli, context, COPY_FILE)

    assert cached_flags(second) == [False, False]


def test_copy_directory_new_file_misses(busybox, cli, context):
    (context / "dir").mkdir()
    (context / "dir" / "a").write_text("a\n")
    dockerfile = "FROM busybox\nCOPY dir /dir\n"
    build(cli, context, dockerfile)

    (context / "dir" / "b").write_text("b\n")
    second = build(cli, context, dockerfile)

    assert cached_flags(second) == [False]


def test_dockerignored_change_hits(busybox, cli, context):
    (context / "keep.txt").write_text("keep\n")
    (context / "skip.txt").write_text("skip\n")
    (context / ".dockerignore").write_text("skip.txt\n")
    dockerfile = "FROM busybox\nCOPY . /app/\n"
    build(cli, context, dockerfile)

    (context / "skip.txt").write_text("changed\n")
    second = build(cli, context, dockerfile)

    assert cached_flags(second) == [True]


def collect_build(root, context, no_cache=False):
    """Build with a fresh Engine object; return the result and the step indexes that hit the cache."""
    cached = []

    def on_event(event):
        if isinstance(event, events.StepCached):
            cached.append(event.index)

    request = BuildRequest(context=str(context), tags=["restart"], no_cache=no_cache)
    result = Builder(Engine(str(root))).build(request, on_event=on_event)
    return result, cached


def test_cache_survives_restart(busybox, context):
    (context / "Dockerfile").write_text(BASE)
    first, first_cached = collect_build(busybox, context)
    second, second_cached = collect_build(busybox, context)

    assert first_cached == []
    assert second_cached == [2, 3, 4, 5]
    assert second.image_id == first.image_id


def test_cache_shared_by_cli_and_api(busybox, cli, context):
    build(cli, context, BASE)
    result, cached = collect_build(busybox, context)

    assert cached == [2, 3, 4, 5]


def test_builder_prune_clears_cache(busybox, cli, context):
    build(cli, context, BASE)

    pruned = cli("builder", "prune", "-f")
    second = build(cli, context, BASE)

    assert pruned.returncode == 0
    assert cached_flags(second) == [False, False, False, False]


def test_summary_marks_cached_steps(busybox, context):
    (context / "Dockerfile").write_text(BASE)
    collect_build(busybox, context)
    result, _ = collect_build(busybox, context)

    assert [step.cached for step in result.summary.steps] == [True, True, True, True]
