"""Fixtures for the runtime tests: a busybox root file system and a helper that runs commands in it.

The tests need overlayfs and namespaces. As an ordinary user the runtime
creates a user namespace first, as rootless layerlab does, so the same tests
run either way. Every test checks that it leaves no mount in the host's
namespace and no child process behind.
"""

import os
import shutil
import subprocess

import pytest

from layerlab.engine.runtime import ContainerSpec, ProcessSpec, RootfsSpec, start
from layerlab.engine.runtime.userns import call_in_user_namespace

BUSYBOX = "/bin/busybox"

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
"""

GROUP = """\
root:x:0:
staff:x:50:app
app:x:1000:
nogroup:x:65534:
"""


def pytest_collection_modifyitems(config, items):
    if not os.path.exists(BUSYBOX):
        skip = pytest.mark.skip(reason="runtime tests need /bin/busybox (Debian's busybox-static)")
        for item in items:
            if "engine/runtime" in str(item.fspath):
                item.add_marker(skip)


def make_busybox_rootfs(path):
    """Create a minimal image root at `path`: busybox with its applet links, users, groups and test files."""
    for directory in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/app", "data"):
        os.makedirs(os.path.join(path, directory), exist_ok=True)

    shutil.copy(BUSYBOX, os.path.join(path, "bin/busybox"))
    applets = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        link = os.path.join(path, "bin", applet)
        if applet != "busybox" and not os.path.lexists(link):
            os.symlink("busybox", link)

    files = {
        "etc/passwd": PASSWD,
        "etc/group": GROUP,
        "etc/motd": "welcome\n",
        "data/notexec": "#!/bin/sh\necho should not run\n",
    }
    for name, text in files.items():
        with open(os.path.join(path, name), "w") as file:
            file.write(text)
    os.chmod(os.path.join(path, "data/notexec"), 0o644)
    os.chown(os.path.join(path, "home/app"), 1000, 1000)


@pytest.fixture(scope="session")
def busybox_lower(tmp_path_factory):
    """A read-only busybox layer shared by every test."""
    path = str(tmp_path_factory.mktemp("busybox") / "fs")
    if os.geteuid() == 0:
        make_busybox_rootfs(path)
    else:
        # Only root of a user namespace with the containers' mapping can give /home/app to container uid 1000.
        call_in_user_namespace(lambda: make_busybox_rootfs(path))
    return path


@pytest.fixture
def rootfs(busybox_lower, tmp_path):
    """A RootfsSpec with the busybox layer under a fresh upper directory."""
    upper = tmp_path / "upper"
    work = tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    return RootfsSpec(lowerdirs=[busybox_lower], upperdir=str(upper), workdir=str(work))


def _mount_table(roots):
    """Return the mounts in this namespace whose mount points are under one of `roots`."""
    with open("/proc/self/mountinfo") as file:
        entries = [line.split(" ", 4)[4] for line in file]
    return sorted(entry for entry in entries if entry.split(" ", 1)[0].startswith(roots))


@pytest.fixture(autouse=True)
def no_leftovers(tmp_path_factory):
    """Fail a test that leaves a mount in this namespace or an unreaped child.

    Only mount points the runtime could have made count, under the tests'
    temporary folders and the runtime directory, so that other programs on
    the host, such as a second test run, cannot fail the check.
    """
    roots = (str(tmp_path_factory.getbasetemp()), "/run/layerlab", "/run/user")
    before = _mount_table(roots)
    yield
    assert _mount_table(roots) == before

    try:
        pid, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        pid = None
    assert pid in (None, 0), "a child process was left running or unreaped"


class Run:
    """Runs a command in a container on `rootfs` and captures its output."""

    def __init__(self, rootfs):
        self.rootfs = rootfs

    def spec(self, args, **options):
        process_options = {key: options.pop(key) for key in ("env", "cwd", "user") if key in options}
        process = ProcessSpec(args=list(args), env=process_options.pop("env", []), **process_options)
        options.setdefault("hostname", "testbox")
        options.setdefault("network", "none")
        return ContainerSpec(id="test", rootfs=self.rootfs, process=process, **options)

    def __call__(self, *args, stdin=None, **options):
        """Run `args` to completion and return (exit code, stdout text)."""
        read_end, write_end = os.pipe()
        try:
            container = start(self.spec(args, **options), stdin=stdin, stdout=write_end)
        finally:
            os.close(write_end)

        with os.fdopen(read_end, "rb") as output:
            text = output.read().decode()
        return container.wait(), text


@pytest.fixture
def run(rootfs):
    return Run(rootfs)

