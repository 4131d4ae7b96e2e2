"""Fixtures shared by the engine tests: a busybox store made once per session, copied per test."""

import os
import shutil
import subprocess
import sys

import pytest


@pytest.fixture(scope="session")
def busybox_template(tmp_path_factory):
    """A store with `layerlab bootstrap busybox` done once; tests copy it."""
    root = tmp_path_factory.mktemp("busybox-template")
    env = dict(os.environ, LAYERLAB_ROOT=str(root))
    subprocess.run([sys.executable, "-m", "layerlab", "bootstrap", "busybox"], env=env, check=True,
                   capture_output=True, timeout=300)
    return root


@pytest.fixture
def busybox(store_root, busybox_template):
    shutil.copytree(busybox_template, store_root, dirs_exist_ok=True, symlinks=True)
    return store_root


@pytest.fixture
def context(tmp_path):
    path = tmp_path / "context"
    path.mkdir()
    return path
