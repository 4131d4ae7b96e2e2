"""A failing mmdebstrap ends `bootstrap` with a clear error and leaves nothing behind."""

import os
import subprocess
import sys

# A failing mmdebstrap: it writes part of the tar, then sends SIGHUP to its whole process group.
FAKE_MMDEBSTRAP = """#!/bin/sh
for arg in "$@"; do
  case "$arg" in *.partial) printf 'partial' > "$arg" ;; esac
done
echo "E: write error: No space left on device" >&2
kill -HUP -$(ps -o pgid= $$ | tr -d ' ')
sleep 5
"""


def test_mmdebstrap_failure_reported(store_root, tmp_path):
    tools = tmp_path / "bin"
    tools.mkdir()
    fake = tools / "mmdebstrap"
    fake.write_text(FAKE_MMDEBSTRAP)
    fake.chmod(0o755)
    env = dict(os.environ, LAYERLAB_ROOT=str(store_root), PATH=f"{tools}:{os.environ['PATH']}",
               SOURCE_DATE_EPOCH="1700000000")

    # A session of its own keeps a SIGHUP to the CLI's process group away from pytest.
    result = subprocess.run([sys.executable, "-m", "layerlab", "bootstrap", "debian:bookworm"], env=env,
                            capture_output=True, text=True, timeout=60, check=False, start_new_session=True)

    assert result.returncode > 0, result.stderr
    assert "mmdebstrap failed (signal 1): E: write error: No space left on device; check free space in " \
        f"{store_root}/tmp/" in result.stderr
    assert "Traceback" not in result.stderr
    assert os.listdir(store_root / "tmp") == []
