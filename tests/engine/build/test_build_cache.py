"""Build cache keys: ONBUILD triggers, COPY --from sources, build args, --cache-from and prune."""

import os

import pytest

from layerlab.engine.api import Engine
from layerlab.engine.build import BuildRequest, Builder
from layerlab.engine.build import events as ev
from layerlab.engine.build.prune import prune_build_cache
from tests.build_oracle.conftest import import_like_docker


@pytest.fixture
def engine(store_root, busybox_rootfs_tar):
    engine = Engine(str(store_root))
    import_like_docker(engine, busybox_rootfs_tar, "busybox:latest")
    return engine


def build(engine, context, dockerfile, **options):
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(dockerfile)
    events = []
    result = Builder(engine).build(BuildRequest(context=str(context), **options), events.append)
    return result, events


def cached_flags(events):
    return [event.cached for event in events if isinstance(event, ev.StepDone)]


def test_cache_hits_on_rebuild(engine, tmp_path):
    dockerfile = "FROM busybox\nRUN echo a > /a\nENV X=1\n"
    first, _ = build(engine, tmp_path, dockerfile)
    second, events = build(engine, tmp_path, dockerfile)

    assert second.image_id == first.image_id
    assert cached_flags(events) == [True, True, True]


def test_onbuild_trigger_change_misses(engine, tmp_path):
    build(engine, tmp_path / "p", "FROM busybox\nONBUILD RUN echo one > /t\n", tags=["parent:latest"])
    child = "FROM parent\nRUN cat /t > /copy\n"
    build(engine, tmp_path / "c", child)
    _, events = build(engine, tmp_path / "c", child)
    assert cached_flags(events) == [True, True, True]

    build(engine, tmp_path / "p", "FROM busybox\nONBUILD RUN echo two > /t\n", tags=["parent:latest"])
    _, events = build(engine, tmp_path / "c", child)
    done = [event for event in events if isinstance(event, ev.StepDone)]

    assert [event.cached for event in done] == [True, False, False]
    assert done[1].instruction == "RUN echo two > /t"


def test_onbuild_triggers_get_own_steps(engine, tmp_path):
    build(engine, tmp_path / "p", "FROM busybox\nONBUILD ENV A=1\nONBUILD RUN echo t > /t\n", tags=["parent:latest"])
    _, events = build(engine, tmp_path / "c", "FROM parent\nENV B=2\n")
    started = [event for event in events if isinstance(event, ev.StepStarted)]

    assert [event.index for event in started] == [1, 2, 3, 4]
    assert [event.instruction for event in started] == ["FROM parent", "ONBUILD ENV A=1",
                                                         "ONBUILD RUN echo t > /t", "ENV B=2"]
    assert {event.total for event in started[1:]} == {4}
    done_indexes = [event.index for event in events if isinstance(event, ev.StepDone)]
    assert done_indexes == [1, 2, 3, 4]


def test_copy_from_source_change_misses(engine, tmp_path):
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "f").write_text("one\n")
    dockerfile = "FROM busybox AS src\nCOPY f /f\nFROM busybox\nCOPY --from=src /f /g\n"
    build(engine, context, dockerfile)
    _, events = build(engine, context, dockerfile)
    assert cached_flags(events) == [True, True, True, True]

    (context / "f").write_text("two\n")
    _, events = build(engine, context, dockerfile)

    assert cached_flags(events) == [True, False, True, False]


def test_build_arg_change_misses(engine, tmp_path):
    dockerfile = "FROM busybox\nARG V\nRUN echo $V > /v\nENV after=1\n"
    build(engine, tmp_path, dockerfile, build_args={"V": "1"})
    _, same = build(engine, tmp_path, dockerfile, build_args={"V": "1"})
    _, changed = build(engine, tmp_path, dockerfile, build_args={"V": "2"})

    assert cached_flags(same) == [True, True, True, True]
    assert cached_flags(changed) == [True, True, False, False]


def test_unused_build_arg_keeps_cache(engine, tmp_path):
    dockerfile = "FROM busybox\nRUN echo a > /a\n"
    build(engine, tmp_path, dockerfile)
    _, events = build(engine, tmp_path, dockerfile, build_args={"UNUSED": "x"})

    assert cached_flags(events) == [True, True]


def test_cache_from_rebuilds_after_prune(engine, tmp_path):
    dockerfile = "FROM busybox\nRUN echo a > /a\nENV X=1\nRUN echo b > /b\n"
    first, _ = build(engine, tmp_path, dockerfile, tags=["app:v1"])
    prune_build_cache(engine)

    second, events = build(engine, tmp_path, dockerfile, cache_from=["app:v1"])

    assert cached_flags(events) == [True, True, True, True]
    assert second.image_id == first.image_id


def test_cache_from_ignores_other_local_cache(engine, tmp_path):
    dockerfile = "FROM busybox\nRUN echo a > /a\n"
    build(engine, tmp_path, dockerfile)
    build(engine, tmp_path / "other", "FROM busybox\nENV UNRELATED=1\n", tags=["other:v1"])

    _, events = build(engine, tmp_path, dockerfile, cache_from=["other:v1"])

    assert cached_flags(events) == [True, False]


def test_cache_from_matches_history(engine, tmp_path):
    dockerfile = "FROM busybox\nRUN echo a > /a\nLABEL l=1\n"
    build(engine, tmp_path, dockerfile, tags=["app:v1"])
    # Without cache entries or intermediate images, only the tagged image's history can match.
    prune_build_cache(engine)

    _, events = build(engine, tmp_path, dockerfile + "ENV changed=1\n", cache_from=["app:v1"])

    assert cached_flags(events) == [True, True, True, False]


def test_builder_prune_removes_mounts_and_records(engine, tmp_path):
    build(engine, tmp_path, "FROM busybox\nRUN --mount=type=cache,target=/c echo x > /c/n\n")
    assert os.listdir(os.path.join(engine.root, "cache-mounts"))
    assert os.listdir(os.path.join(engine.root, "build-records"))

    report = prune_build_cache(engine)

    assert report.cache_entries == 1
    assert report.cache_mounts == 1
    assert report.step_records >= 1
    assert os.listdir(os.path.join(engine.root, "cache-mounts")) == []
    assert os.listdir(os.path.join(engine.root, "build-records")) == []
    _, events = build(engine, tmp_path, "FROM busybox\nRUN --mount=type=cache,target=/c echo x > /c/n\n")
    assert cached_flags(events) == [True, False]
