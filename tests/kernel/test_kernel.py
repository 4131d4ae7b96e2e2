"""The layerlab kernel, started by jupyter_client, running Python and Docker cells."""

import re
from pathlib import Path

from tests.kernel.conftest import needs_engine_cli

DOCKERFILE_BODY = """>>> this line looks like a Python prompt
FROM busybox
  # indented comment
RUN cat <<EOF > /hello.py
>>> print("hello")
... continued
In [1]: not a prompt either
EOF
CMD ["python3", "/hello.py"]
"""


def test_kernel_info_names_layerlab(layerlab_kernel):
    reply = layerlab_kernel.client.kernel_info(reply=True, timeout=30)

    assert reply["content"]["implementation"] == "layerlab"
    assert reply["content"]["language_info"]["name"] == "python"


def test_python_cell_runs_as_usual(layerlab_kernel):
    result = layerlab_kernel.run("x = 6 * 7\nprint(x)\nx")

    assert result.status == "ok"
    assert result.stream("stdout") == "42\n"
    assert result.of_type("execute_result")[0]["data"]["text/plain"] == "42"


def test_python_prompts_still_stripped(layerlab_kernel):
    # Only Docker cells skip IPython's transformers; pasted doctests still work.
    result = layerlab_kernel.run(">>> print('pasted')")

    assert result.status == "ok"
    assert result.stream("stdout") == "pasted\n"


def test_python_error_keeps_traceback(layerlab_kernel):
    result = layerlab_kernel.run("1 / 0")

    assert result.status == "error"
    assert result.reply["content"]["ename"] == "ZeroDivisionError"


def test_dockerfile_cell_written_byte_for_byte(layerlab_kernel, work_dir):
    result = layerlab_kernel.run("%%dockerfile\n" + DOCKERFILE_BODY)

    assert result.status == "ok", result.stream("stderr")
    assert (work_dir / "Dockerfile").read_bytes() == DOCKERFILE_BODY.encode()


def test_dockerfile_cell_gets_final_newline(layerlab_kernel, work_dir):
    # Frontends send cells without a final newline; IPython's own cell
    # magics get one appended, and so does the Dockerfile.
    result = layerlab_kernel.run("%%dockerfile\n>>> FROM busybox")

    assert result.status == "ok", result.stream("stderr")
    assert (work_dir / "Dockerfile").read_text() == ">>> FROM busybox\n"


def test_dockerfile_cell_into_new_directory(layerlab_kernel, work_dir):
    result = layerlab_kernel.run("%%dockerfile figlet/\nFROM busybox\n")

    assert result.status == "ok", result.stream("stderr")
    assert (work_dir / "figlet" / "Dockerfile").read_text() == "FROM busybox\n"


def test_dockerfile_cell_into_named_file(layerlab_kernel, work_dir):
    result = layerlab_kernel.run("%%dockerfile app/Dockerfile.dev\nFROM busybox\n")

    assert result.status == "ok", result.stream("stderr")
    assert (work_dir / "app" / "Dockerfile.dev").read_text() == "FROM busybox\n"


def test_dockerfile_cell_in_history_as_typed(layerlab_kernel):
    cell = "%%dockerfile\n>>> FROM busybox\n"
    first = layerlab_kernel.run(cell)
    second = layerlab_kernel.run("1")

    assert first.status == "ok"
    assert second.reply["content"]["execution_count"] == first.reply["content"]["execution_count"] + 1
    reply = layerlab_kernel.client.history(raw=True, output=False, hist_access_type="tail", n=2,
                                           reply=True, timeout=30)
    # IPython's history drops the final newline of every cell.
    assert reply["content"]["history"][0][2] == cell.rstrip("\n")


def test_docker_like_python_stays_python(layerlab_kernel):
    result = layerlab_kernel.run("docker = {'images': 3}\ndocker is None")

    assert result.status == "ok"
    assert result.of_type("execute_result")[0]["data"]["text/plain"] == "False"


@needs_engine_cli
def test_bare_docker_images_cell(layerlab_kernel):
    result = layerlab_kernel.run("# list the images\ndocker images")

    assert result.status == "ok", result.stream("stderr")
    displays = result.of_type("display_data")
    shown = result.stream("stdout") + "".join(d["data"]["text/plain"] for d in displays)
    assert shown.startswith("REPOSITORY")
    assert "IMAGE ID" in shown


@needs_engine_cli
def test_unknown_subcommand_fails_cell_cleanly(layerlab_kernel):
    result = layerlab_kernel.run("docker frobnicate")

    assert result.status == "error"
    assert result.stream("stderr").strip() != ""
    assert "Traceback" not in result.stream("stderr")
    errors = result.of_type("error")
    assert [error["ename"] for error in errors] == ["DockerCommandError"]
    assert len(errors[0]["traceback"]) == 1
    assert "Traceback" not in errors[0]["traceback"][0]


@needs_engine_cli
def test_failing_line_stops_later_lines(layerlab_kernel):
    result = layerlab_kernel.run("docker frobnicate\ndocker images")

    assert result.status == "error"
    assert "REPOSITORY" not in result.stream("stdout")


def test_presenter_streams_build_and_displays_once(layerlab_kernel):
    # Drives the NotebookPresenter with the events of a two-step build, so
    # the test needs no base image.
    code = """
from layerlab.engine.build import events
from layerlab.kernel.presenter import NotebookPresenter
p = NotebookPresenter()
for event in [
    events.StepStarted(1, 2, "FROM busybox"),
    events.StepDone(1, "FROM busybox", "sha256:" + "a" * 64, True, 0.01, None),
    events.StepStarted(2, 2, "RUN echo hi"),
    events.ContainerStarted(2, "c" * 64),
    events.OutputLine(2, "hi"),
    events.StepDone(2, "RUN echo hi", "sha256:" + "b" * 64, False, 0.5, 1234),
    events.BuildDone("sha256:" + "b" * 64, ["demo:latest"], 0.51),
]:
    p.build_event(event)
p.close()
"""
    result = layerlab_kernel.run(code)

    assert result.status == "ok", result.stream("stderr")
    assert result.stream("stdout") == (
        "Step 1/2 : FROM busybox\n ---> aaaaaaaaaaaa\n"
        "Step 2/2 : RUN echo hi\n ---> Running in cccccccccccc\nhi\n ---> bbbbbbbbbbbb\n"
        "Successfully built bbbbbbbbbbbb\nSuccessfully tagged demo:latest\n"
    )
    displays = result.of_type("display_data")
    assert len(displays) == 1
    lines = displays[0]["data"]["text/plain"].splitlines()
    assert lines[0].split() == ["STEP", "RESULT", "TIME", "LAYER", "INSTRUCTION"]
    assert lines[1].split()[:2] == ["1", "CACHED"]
    assert lines[2].split()[:2] == ["2", "RAN"]
    assert "application/vnd.jupyter.widget-view+json" in displays[0]["data"]


def test_container_stdio_reaches_cell_in_order(layerlab_kernel):
    code = """
import subprocess
from layerlab.kernel.presenter import NotebookPresenter
with NotebookPresenter().container_stdio() as (out, err):
    subprocess.run(["sh", "-c", "for i in 1 2 3; do echo line $i; done; printf 'no newline'; echo oops >&2"],
                   stdout=out, stderr=err, check=True)
print("after")
"""
    result = layerlab_kernel.run(code)

    assert result.status == "ok", result.stream("stderr")
    assert result.stream("stdout") == "line 1\nline 2\nline 3\nno newlineafter\n"
    assert result.stream("stderr") == "oops\n"


def test_kernelspec_runs_this_python(kernelspecs):
    spec = kernelspecs.get_kernel_spec("layerlab")

    assert spec.display_name == "layerlab (Docker)"
    assert spec.language == "python"
    assert spec.argv[1:] == ["-m", "layerlab.kernel", "-f", "{connection_file}"]
    assert (Path(spec.resource_dir) / "logo-svg.svg").exists()


def test_container_output_streams_into_cell(layerlab_kernel):
    bootstrap = layerlab_kernel.run("docker bootstrap busybox")
    assert bootstrap.status == "ok", bootstrap.stream("stderr")

    result = layerlab_kernel.run("docker run --rm busybox sh -c 'echo hello; echo oops >&2; echo bye'")

    assert result.status == "ok", result.stream("stderr")
    assert result.stream("stdout") == "hello\nbye\n"
    assert result.stream("stderr") == "oops\n"


def test_failing_container_fails_cell(layerlab_kernel):
    layerlab_kernel.run("docker bootstrap busybox")

    result = layerlab_kernel.run("docker run --rm busybox sh -c 'exit 3'")

    assert result.status == "error"
    assert result.reply["content"]["evalue"].endswith("exited with status 3")


def test_images_cell_displays_table_widget(layerlab_kernel):
    layerlab_kernel.run("docker bootstrap busybox")

    result = layerlab_kernel.run("docker images")

    assert result.status == "ok", result.stream("stderr")
    displays = result.of_type("display_data")
    assert len(displays) == 1
    text = displays[0]["data"]["text/plain"]
    assert text.splitlines()[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert text.splitlines()[1].split()[:2] == ["busybox", "latest"]
    assert "<table" in displays[0]["data"]["text/html"]


def test_dockerfile_cell_builds_with_tag(layerlab_kernel, work_dir):
    layerlab_kernel.run("docker bootstrap busybox")
    cell = "%%dockerfile hello/ -t hello\nFROM busybox\nRUN echo built > /built.txt\nCMD [\"cat\", \"/built.txt\"]\n"

    first = layerlab_kernel.run(cell)
    second = layerlab_kernel.run(cell)

    assert first.status == "ok", first.stream("stderr")
    assert (work_dir / "hello" / "Dockerfile").exists()
    assert "Step 2/3 : RUN echo built > /built.txt" in first.stream("stdout")
    assert "Successfully tagged hello:latest" in first.stream("stdout")
    assert " ---> Using cache" in second.stream("stdout")

    # One build widget, then one layer stack, each displayed once.
    texts = [display["data"]["text/plain"] for display in second.of_type("display_data")]
    assert len(texts) == 2
    assert texts[0].splitlines()[0].split() == ["STEP", "RESULT", "TIME", "LAYER", "INSTRUCTION"]
    assert all("CACHED" in line for line in texts[0].splitlines()[1:])
    assert texts[1].startswith("hello")
    assert "layerlab-cached" in second.of_type("display_data")[1]["data"]["text/html"]

    run = layerlab_kernel.run("docker run --rm hello")
    assert run.stream("stdout") == "built\n"


def test_failing_build_fails_cell_cleanly(layerlab_kernel):
    layerlab_kernel.run("docker bootstrap busybox")

    result = layerlab_kernel.run("%%dockerfile broken/ -t broken\nFROM busybox\nRUN echo trying; exit 7\n")

    assert result.status == "error"
    assert "trying\n" in result.stream("stdout")
    assert result.stream("stderr").strip() != ""
    assert "Traceback" not in result.stream("stderr")
    assert result.reply["content"]["ename"] == "DockerCommandError"


def test_diff_cell_displays_diff_widget(layerlab_kernel):
    layerlab_kernel.run("docker bootstrap busybox")
    run = layerlab_kernel.run("docker run --name changer busybox sh -c 'touch /added; rm /bin/true'")
    assert run.status == "ok", run.stream("stderr")

    result = layerlab_kernel.run("docker diff changer")

    assert result.status == "ok", result.stream("stderr")
    displays = result.of_type("display_data")
    assert len(displays) == 1
    assert "A /added\n" in displays[0]["data"]["text/plain"]
    assert "D /bin/true\n" in displays[0]["data"]["text/plain"]
    assert 'class="layerlab-diff-A"' in displays[0]["data"]["text/html"]


def test_exec_tty_streams_into_cell(layerlab_kernel):
    layerlab_kernel.run("docker bootstrap busybox")
    layerlab_kernel.run("docker run -d --network none --name k busybox sleep 300")

    run_tty = layerlab_kernel.run("docker run --rm --network none -t busybox tty")
    exec_tty = layerlab_kernel.run("docker exec -t k sh -c 'tty; exit 4'")
    interactive = layerlab_kernel.run("docker exec -it k true")
    detached = layerlab_kernel.run("docker exec -d k sh -c 'echo hidden; touch /done'")
    removed = layerlab_kernel.run("docker rm -f k")

    # A notebook has no terminal, so the cell shows the terminal's output, with its \r\n, as for run -t.
    assert run_tty.stream("stdout") == "/dev/pts/0\r\n"
    assert re.fullmatch(r"/dev/pts/\d+\r\n", exec_tty.stream("stdout")), exec_tty.stream("stdout")
    assert exec_tty.status == "error"
    assert exec_tty.reply["content"]["evalue"].endswith("exited with status 4")
    assert interactive.status == "error"
    assert "the input device is not a TTY" in interactive.stream("stderr")
    assert detached.status == "ok", detached.stream("stderr")
    assert detached.stream("stdout") == ""
    assert removed.status == "ok", removed.stream("stderr")
