"""Run the course notebooks under nbval, as CI does, and compare their outputs.

As an ordinary user, run them as a student on JupyterHub or Binder would
instead: scripts/test.sh runs `test_notebooks_run_as_ordinary_user` in its
pass as layerlab-ci, and it skips as root.

Each pass executes copies of notebooks/NN-*.ipynb in the order of their
number, in one temporary directory, because the notebooks write build
contexts next to themselves. Both passes use one image store: fresh for the
first pass, reused by the second. The layerlab kernelspec is installed into
a temporary prefix.
Later notebooks build on images that earlier ones make, so they share the
store and run in one nbval session. The notebooks bootstrap busybox and
debian:bookworm themselves (debian once per pass, in 02), so this needs the
Debian archive.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from layerlab.engine.api import Engine

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
SANITIZE_FILE = NOTEBOOKS_DIR / "nbval-sanitize.cfg"

# Timeout in seconds for one nbval pass over every notebook. It is long
# because a debian bootstrap and the build-essential install of notebook 03
# take minutes on a slow mirror.
NBVAL_TIMEOUT = 1800

# Timeout in seconds for one cell of a notebook run without nbval. The
# slowest cells are the same bootstrap and apt-get installs.
CELL_TIMEOUT = 1200


def course_notebooks():
    """Return the numbered course notebooks in the order they must run."""
    return sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]-*.ipynb"))

pytestmark = pytest.mark.network


@pytest.fixture
def notebook_env(tmp_path):
    """Copy the notebooks, make a fresh store and a private kernelspec; return (folder, env)."""
    work_dir = tmp_path / "notebooks"
    work_dir.mkdir()
    notebooks = course_notebooks()
    assert notebooks, f"no NN-*.ipynb notebooks in {NOTEBOOKS_DIR}"
    for notebook in notebooks:
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
    # Named one by one, in order: pytest collects a directory in its own order.
    notebooks = [str(work_dir / path.name) for path in course_notebooks()]
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "--rootdir", str(work_dir),
        "--nbval", *notebooks,
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


def remove_all_containers(store):
    # A failing cell can leave a notebook's detached containers (web servers,
    # registries) running, with their monitors as processes of this user.
    engine = Engine(str(store))
    for record in engine.containers.list():
        engine.remove_container(record.id, force=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="runs as an ordinary user; scripts/test.sh runs it as layerlab-ci")
def test_notebooks_run_as_ordinary_user(notebook_env, monkeypatch):
    """Every cell runs rootless without an error, except those tagged raises-exception.

    Outputs are not compared: the stored ones come from a run as root.
    """
    work_dir, env = notebook_env
    monkeypatch.setenv("LAYERLAB_ROOT", env["LAYERLAB_ROOT"])
    monkeypatch.setenv("JUPYTER_PATH", env["JUPYTER_PATH"])

    try:
        for source in course_notebooks():
            path = work_dir / source.name
            notebook = nbformat.read(path, as_version=4)
            client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="layerlab",
                                    resources={"metadata": {"path": str(work_dir)}})
            try:
                client.execute()
            except CellExecutionError as error:
                pytest.fail(f"a cell of {source.name} failed as uid {os.geteuid()}:\n{error}")
    finally:
        remove_all_containers(env["LAYERLAB_ROOT"])
