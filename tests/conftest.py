"""Fixtures shared by every test: private stores, base-image tarballs, the CLI.

Base-image tarballs are built once and cached on disk across runs
(`LAYERLAB_TEST_CACHE`, default /var/tmp/layerlab-test-cache), because a
debian bootstrap can take minutes on a slow mirror. Any mount left under a test's temporary
directory fails that test.
"""

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from layerlab.engine import rootfs_builders
from tests.oracle.dockerd import dockerd_fixture  # noqa: F401 (registers `dockerd`)
from tests.oracle.podman import podman_fixture  # noqa: F401 (registers `podman`)

log = logging.getLogger(__name__)

CACHE_DIR = Path(os.environ.get("LAYERLAB_TEST_CACHE", "/var/tmp/layerlab-test-cache"))

# Tests that use these fixtures need the Debian archive, so they get the
# `network` marker and `-m 'not network'` deselects them.
NETWORK_FIXTURES = {"debian_rootfs", "debian_rootfs_tar"}
DOCKER_FIXTURES = {"dockerd"}
PODMAN_FIXTURES = {"podman"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & NETWORK_FIXTURES:
            item.add_marker(pytest.mark.network)
        if fixtures & DOCKER_FIXTURES:
            item.add_marker(pytest.mark.docker)
        if fixtures & PODMAN_FIXTURES:
            item.add_marker(pytest.mark.podman)


def cache_dir():
    """Return the tarball cache, made on first use; a private temp dir if that one is not writable."""
    try:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        return Path(tempfile.mkdtemp(prefix="layerlab-test-cache-"))
    if not os.access(CACHE_DIR, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="layerlab-test-cache-"))
    return CACHE_DIR


def cached_build(tar_path, build):
    """Return the metadata of `tar_path`, calling `build(tar_path)` first if it is not cached."""
    meta_path = tar_path.with_suffix(".json")
    if tar_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        meta["path"] = str(tar_path)
        return meta

    meta = build(str(tar_path))
    meta_path.write_text(json.dumps(meta, indent=1, sort_keys=True))
    meta["path"] = str(tar_path)
    return meta


@pytest.fixture
def store_root(tmp_path, monkeypatch):
    """A fresh, empty LAYERLAB_ROOT, also set in the environment for subprocesses."""
    root = tmp_path / "store"
    root.mkdir()
    monkeypatch.setenv("LAYERLAB_ROOT", str(root))
    yield root
    # A bridge run gave the store a default bridge of its own, which outlives the folder unless pruned.
    if os.geteuid() == 0 and (root / "networks" / "bridge.json").exists():
        subprocess.run([sys.executable, "-m", "layerlab", "network", "prune", "-f"],
                       env=dict(os.environ, LAYERLAB_ROOT=str(root)), capture_output=True, timeout=60, check=False)


@pytest.fixture
def cli(store_root):
    """Run `layerlab ARGS...` in a subprocess against `store_root`; returns the CompletedProcess."""
    env = dict(os.environ, LAYERLAB_ROOT=str(store_root))

    def run(*args, input=None, timeout=300, cwd=None):
        return subprocess.run(
            [sys.executable, "-m", "layerlab", *map(str, args)],
            input=input, capture_output=True, text=True,
            env=env, cwd=cwd, timeout=timeout, check=False,
        )

    return run


@pytest.fixture(scope="session")
def busybox_rootfs():
    """Metadata of the busybox rootfs tarball (see build_busybox_rootfs), with its "path"."""
    cache = cache_dir()
    with tempfile.TemporaryDirectory(prefix="layerlab-busybox-deb-") as download_dir:
        source = rootfs_builders.locate_busybox(download_dir)

    # The package's digest names the tarball, so a new busybox-static
    # package gives a new tarball; the installed binary has no digest.
    key = (source.deb_sha256 or f"installed-{source.version}")[:16]
    tar_path = cache / f"busybox-{key}.tar"
    return cached_build(tar_path, rootfs_builders.build_busybox_rootfs)


@pytest.fixture(scope="session")
def busybox_rootfs_tar(busybox_rootfs):
    """Path of the cached busybox rootfs tarball."""
    return busybox_rootfs["path"]


@pytest.fixture(scope="session")
def debian_rootfs():
    """Metadata of a cached debian:bookworm minbase rootfs tarball, with its "path"."""
    tar_path = cache_dir() / "debian-bookworm-minbase.tar"

    def build(path):
        return rootfs_builders.build_debian_rootfs("bookworm", path)

    return cached_build(tar_path, build)


@pytest.fixture(scope="session")
def debian_rootfs_tar(debian_rootfs):
    """Path of the cached debian:bookworm rootfs tarball."""
    return debian_rootfs["path"]


def mounts_under(prefix):
    """Return the mount points at or under `prefix`, from this process's mount table."""
    prefix = str(prefix).rstrip("/")
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as table:
        for line in table:
            # The 5th field is the mount point, with spaces and the like
            # octal-escaped (\040).
            target = line.split()[4].encode().decode("unicode_escape")
            if target == prefix or target.startswith(prefix + "/"):
                found.append(target)
    return found


def unmount_all(targets):
    # Deepest first, lazily: a busy mount must not keep later tests from
    # removing their directories.
    for target in sorted(targets, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)


@pytest.fixture(autouse=True)
def no_leaked_mounts(request, tmp_path_factory):
    """Fail a test that leaves a mount under pytest's temporary directory or the store."""
    yield

    roots = [tmp_path_factory.getbasetemp()]
    if os.environ.get("LAYERLAB_ROOT"):
        roots.append(Path(os.environ["LAYERLAB_ROOT"]))

    leaked = [target for root in roots for target in mounts_under(root)]
    if leaked:
        unmount_all(leaked)
        pytest.fail(f"{request.node.nodeid} left mounts behind: {', '.join(leaked)}", pytrace=False)


def prune_store_networks(top):
    """Run `network prune` on every store under `top`, so no store's bridge or NAT rule outlives the run.

    A store keeps its default bridge until it is pruned, as Docker keeps
    docker0; fixtures that make stores of their own rely on this sweep.
    """
    if os.geteuid() != 0:
        return
    for networks in Path(top).glob("**/networks"):
        store = networks.parent
        if not (store / "index.json").exists():
            continue
        subprocess.run([sys.executable, "-m", "layerlab", "network", "prune", "-f"],
                       env=dict(os.environ, LAYERLAB_ROOT=str(store)), capture_output=True, timeout=120, check=False)


def pytest_sessionfinish(session, exitstatus):
    """Prune the test stores' networks, then fail the run if a mount under pytest's temporary directory remains."""
    basetemp = session.config._tmp_path_factory.getbasetemp()
    prune_store_networks(basetemp)
    leaked = mounts_under(basetemp)
    if not leaked:
        return

    message = f"mounts left under {basetemp} after the run: {', '.join(leaked)}"
    log.error(message)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(message, red=True)
    unmount_all(leaked)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
