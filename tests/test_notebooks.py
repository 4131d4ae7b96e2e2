"""Run the course notebooks under nbval, as CI does, and compare their outputs.

Each run executes copies of notebooks/*.ipynb in a temporary directory (the
notebooks write build contexts next to themselves) against a fresh image
store, with the layerlab kernelspec installed into a temporary prefix. The
notebooks bootstrap busybox and debian:bookworm themselves, so this needs
the Debian archive.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
SANITIZE_FILE = NOTEBOOKS_DIR / "nbval-sanitize.cfg"

# Timeout in seconds for one nbval pass over every notebook. It is long
# because a debian bootstrap on a slow mirror takes minutes.
NBVAL_TIMEOUT = 1500

pytestmark = pytest.mark.network


@pytest.fixture
def notebook_env(tmp_path):
    """Copy the notebooks, make a fresh store and a private kernelspec; return (folder, env)."""
    work_dir = tmp_path / "notebooks"
    work_dir.mkdir()
    for notebook in NOTEBOOKS_DIR.glob("*.ipynb"):
        shutil.copy(notebook, work_dir)
    shutil.copy(SANITIZE_FILE, work_dir)

    store = tmp_path / "store"
    store.mkdir()
    prefix = tmp_path / "prefix"
    subprocess.run(
        [sys.executable, "-m", "layerlab.kernel", "install", "--prefix", str(prefix)],
        check=True, capture_output=True, text=True,
    )

    env = dict(os.environ)
    env["LAYERLAB_ROOT"] = str(store)
    env["JUPYTER_PATH"] = os.pathsep.join(
        [str(prefix / "share" / "jupyter"), *filter(None, [env.get("JUPYTER_PATH")])]
    )
    return work_dir, env


def run_nbval(work_dir, env):
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "--rootdir", str(work_dir),
        "--nbval", str(work_dir),
        "--nbval-sanitize-with", str(work_dir / SANITIZE_FILE.name),
    ]
    return subprocess.run(command, cwd=work_dir, env=env, capture_output=True, text=True,
                          timeout=NBVAL_TIMEOUT)


def test_notebooks_pass_nbval_twice(notebook_env):
    """The stored outputs match a fresh run, and a second run in the same store."""
    work_dir, env = notebook_env

    for attempt in ("first run, fresh store", "second run, same store"):
        result = run_nbval(work_dir, env)
        assert result.returncode == 0, (
            f"nbval failed on the {attempt} (exit {result.returncode}):\n"
            f"{result.stdout[-20000:]}\n{result.stderr[-5000:]}"
        )
