"""`layerlab build` output: progress modes, -q, rawjson fields, step notes and error text."""

import io
import json
import re

import pytest

from layerlab.engine.api import Engine
from layerlab.engine.build import BuildRequest, Builder
from layerlab.engine.build import events as ev
from layerlab.engine.cli.build_progress import PlainPrinter, TtyPrinter
from layerlab.engine.cli.main import main
from layerlab.engine.cli.presenter import TerminalPresenter
from layerlab.engine.errors import BuildStepError, DockerfileError
from tests.build_oracle.conftest import import_like_docker


@pytest.fixture
def engine(store_root, busybox_rootfs_tar):
    engine = Engine(str(store_root))
    import_like_docker(engine, busybox_rootfs_tar, "busybox:latest")
    return engine


class FakeTerminal(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def cli(context, *flags, tty=False):
    out, err = FakeTerminal(tty), FakeTerminal(tty)
    status = main(["build", *flags, str(context)], presenter=TerminalPresenter(out, err))
    return status, out.getvalue(), err.getvalue()


def write(context, dockerfile):
    (context / "Dockerfile").write_text(dockerfile)


def test_quiet_prints_only_id(engine, tmp_path):
    write(tmp_path, "FROM busybox\nRUN echo noisy\n")
    status, out, err = cli(tmp_path, "-q")

    assert status == 0
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", out)
    assert err == ""


def test_plain_prefixes_step_numbers(engine, tmp_path):
    write(tmp_path, "FROM busybox\nRUN echo first && echo second\n")
    status, out, _ = cli(tmp_path, "--progress=plain", "--no-cache")

    assert status == 0
    assert "#1 [1/2] FROM busybox\n" in out
    assert "#2 [2/2] RUN echo first && echo second\n" in out
    assert re.search(r"^#2 \d+\.\d{3} first$", out, re.M)
    assert re.search(r"^#2 \d+\.\d{3} second$", out, re.M)
    assert re.search(r"^#2 DONE \d+\.\d+s \(cache miss: --no-cache\)$", out, re.M)
    assert re.search(r"^#3 writing image sha256:[0-9a-f]{64} done$", out, re.M)


def test_plain_marks_cached_steps(engine, tmp_path):
    write(tmp_path, "FROM busybox\nRUN echo a\n")
    cli(tmp_path)
    _, out, _ = cli(tmp_path, "--progress=plain")

    assert "#2 CACHED\n" in out


def test_auto_without_terminal_is_classic(engine, tmp_path):
    write(tmp_path, "FROM busybox\nRUN echo hello\n")
    _, out, _ = cli(tmp_path, "--no-cache")

    assert "Step 2/2 : RUN echo hello\n" in out
    assert "\nhello\n" in out
    assert "Successfully built " in out


def test_auto_on_terminal_is_live_view(engine, tmp_path):
    write(tmp_path, "FROM busybox\nRUN echo hello\n")
    _, out, _ = cli(tmp_path, "--no-cache", tty=True)

    assert "Step 2/2" not in out
    assert "\r\x1b[K=> [2/2] RUN echo hello | hello" in out
    assert re.search(r"\r\x1b\[K=> \[2/2\] RUN echo hello  \d+\.\ds \(cache miss: --no-cache\)\n", out)


def test_tty_printer_marks_cached():
    written = []
    printer = TtyPrinter(written.append, width=80)
    printer(ev.StepStarted(1, 1, "ENV A=1"))
    printer(ev.StepDone(1, "ENV A=1", "sha256:x", True, 0.0, None))

    assert "".join(written).endswith("=> [1/1] ENV A=1  CACHED\n")


def test_plain_output_seconds_use_step_start():
    written = []
    times = iter([10.0, 10.5])
    printer = PlainPrinter(written.append, clock=lambda: next(times))
    printer(ev.StepStarted(3, 5, "RUN x"))
    printer(ev.OutputLine(3, "line"))

    assert written[-1] == "#3 0.500 line\n"


def test_rawjson_step_fields(engine, tmp_path):
    write(tmp_path, "FROM busybox\nRUN echo a > /a\nENV X=1\n")
    cli(tmp_path)
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo b > /a\nENV X=1\n")
    _, out, _ = cli(tmp_path, "--progress=rawjson")
    records = [json.loads(line) for line in out.splitlines()]
    done = [record for record in records if record["event"] == "StepDone"]

    assert [record["index"] for record in done] == [1, 2, 3]
    assert done[1]["instruction"] == "RUN echo b > /a"
    assert done[1]["cached"] is False
    assert done[1]["cache_miss_reason"].startswith("instruction changed")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", done[1]["layer_digest"])
    assert isinstance(done[1]["seconds"], float)
    assert done[2]["layer_digest"] is None
    assert records[-1]["event"] == "BuildDone"


def test_failed_run_prints_last_lines(engine, tmp_path):
    write(tmp_path, "FROM busybox\nRUN echo before && echo broken >&2 && exit 3\n")
    status, _, err = cli(tmp_path)

    assert status != 0
    assert ("Dockerfile:2: RUN: The command '/bin/sh -c echo before && echo broken >&2 && exit 3' "
            "returned a non-zero code: 3") in err
    assert "------\n > before\n > broken\n------\n" in err


def test_failed_run_error_fields(engine, tmp_path):
    write(tmp_path, "FROM busybox\nENV A=1\nRUN exit 7\n")
    with pytest.raises(BuildStepError) as caught:
        Builder(engine).build(BuildRequest(context=str(tmp_path)))

    assert caught.value.status == 7
    assert caught.value.step == 3
    assert "fix the command" in str(caught.value)


def notes(engine, tmp_path, dockerfile):
    write(tmp_path, dockerfile)
    events = []
    Builder(engine).build(BuildRequest(context=str(tmp_path)), events.append)
    return [(event.index, event.message) for event in events if isinstance(event, ev.BuildWarning)]


def test_notes_for_docker_format_settings(engine, tmp_path):
    found = notes(engine, tmp_path, 'FROM busybox\nHEALTHCHECK CMD true\nSHELL ["/bin/sh", "-c"]\n'
                                    "ONBUILD RUN true\nENV A=1\n")

    assert [index for index, _ in found] == [2, 3, 4]
    for (_, message), keyword, line in zip(found, ("HEALTHCHECK", "SHELL", "ONBUILD"), (2, 3, 4)):
        assert message.startswith(f"Dockerfile:{line}: {keyword} is not part of the OCI image format")
        assert "buildah --format oci drops it" in message


@pytest.mark.parametrize("instruction, feature", [
    ("RUN <<EOF\ntrue\nEOF", "heredocs"),
    ("RUN --mount=type=tmpfs,target=/t true", "RUN --mount"),
    ("RUN --network=none true", "RUN --network"),
    ("COPY --link Dockerfile /d", "COPY --link"),
    ("COPY --chmod=600 Dockerfile /d", "COPY --chmod"),
    ("COPY --exclude=x Dockerfile /d/", "COPY --exclude"),
    ("COPY --parents Dockerfile /d/", "COPY --parents"),
])
def test_notes_for_buildkit_syntax(engine, tmp_path, instruction, feature):
    found = notes(engine, tmp_path, f"FROM busybox\n{instruction}\n")

    assert len(found) == 1
    index, message = found[0]
    assert index == 2
    assert message.startswith("Dockerfile:2: Docker's classic builder (DOCKER_BUILDKIT=0) does not support ")
    assert feature in message


def test_no_notes_for_plain_dockerfile(engine, tmp_path):
    assert notes(engine, tmp_path, "FROM busybox\nRUN true\nCOPY Dockerfile /d\n") == []


@pytest.mark.parametrize("dockerfile, line, keyword", [
    ("FROM busybox\nCOPY\n", 2, "COPY"),
    ("FROM busybox\nCOPY missing.txt /m\n", 2, "COPY"),
    ("FROM busybox\nCOPY --from=nowhere /a /b\n", 2, "COPY"),
    ("FROM no-such-image-here\n", 1, "FROM"),
    ("FROM busybox\nRUN --network=bridge2 true\n", 2, "RUN"),
    ("FROM busybox\nEXPOSE notaport\n", 2, "EXPOSE"),
    ("FROM busybox\nHEALTHCHECK --interval=x CMD true\n", 2, "HEALTHCHECK"),
    ("FROM busybox\nENV\n", 2, "ENV"),
])
def test_errors_name_file_line_instruction(engine, tmp_path, dockerfile, line, keyword):
    write(tmp_path, dockerfile)
    with pytest.raises(DockerfileError) as caught:
        Builder(engine).build(BuildRequest(context=str(tmp_path)))

    message = str(caught.value)
    assert message.startswith(f"Dockerfile:{line}: {keyword}: "), message
    assert caught.value.line == line
    assert caught.value.instruction == keyword


def test_unknown_instruction_suggests_keyword(engine, tmp_path):
    write(tmp_path, "FROM busybox\nRUNN true\n")
    with pytest.raises(DockerfileError) as caught:
        Builder(engine).build(BuildRequest(context=str(tmp_path)))

    assert str(caught.value) == "Dockerfile:2: unknown instruction: RUNN (did you mean RUN?)"


def test_plain_names_cache_miss_reason(engine, tmp_path):
    write(tmp_path, "FROM busybox\nCOPY a /a\n")
    (tmp_path / "a").write_text("one\n")
    cli(tmp_path)
    (tmp_path / "a").write_text("two\n")

    _, out, _ = cli(tmp_path, "--progress=plain")

    assert re.search(r"^#2 DONE \d+\.\d+s \(cache miss: content changed: a\)$", out, re.M)
