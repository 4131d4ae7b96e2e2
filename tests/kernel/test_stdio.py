"""Container output through pipes into text streams, complete and in order."""

import io
import subprocess

from layerlab.kernel.stdio import container_pipes


class RecordingStream(io.StringIO):
    """A text stream that records what each flush had written, to check line-wise delivery."""

    def __init__(self):
        super().__init__()
        self.flushed = []

    def flush(self):
        if self.getvalue() != "".join(self.flushed):
            self.flushed.append(self.getvalue()[len("".join(self.flushed)):])


def run_shell(script):
    out, err = RecordingStream(), RecordingStream()
    with container_pipes(out, err) as (stdout_fd, stderr_fd):
        subprocess.run(["sh", "-c", script], stdout=stdout_fd, stderr=stderr_fd, check=True)
    return out, err


def test_pipes_deliver_all_lines_in_order():
    out, err = run_shell("i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done; echo bad >&2")

    assert out.getvalue() == "".join(f"line {i}\n" for i in range(2000))
    assert err.getvalue() == "bad\n"


def test_pipes_flush_whole_lines_only():
    out, _ = run_shell("printf 'a\\nb'; sleep 0.2; printf 'c\\nd'")

    assert out.getvalue() == "a\nbc\nd"
    assert all(part.endswith("\n") for part in out.flushed[:-1])
    assert out.flushed[-1] == "d"


def test_pipes_replace_invalid_utf8():
    out, _ = run_shell("printf 'caf\\303\\251 \\377\\n'")

    assert out.getvalue() == "café \ufffd\n"


def test_pipes_return_when_writer_outlives_container(monkeypatch):
    # A background job keeps the write end open after the shell exits.
    monkeypatch.setattr("layerlab.kernel.stdio.DRAIN_TIMEOUT", 0.5)
    out, _ = run_shell("echo before; (sleep 3 &) ; echo after")

    assert out.getvalue() == "before\nafter\n"
