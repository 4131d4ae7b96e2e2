"""Read-only mount trees on kernels without mount_setattr(2): the mountinfo walk and its remounts."""

import errno
import json
import os

import pytest

from layerlab.engine.errors import ContainerError
from layerlab.engine.runtime import rootfs as rootfs_module
from layerlab.engine.runtime import run_in_rootfs, syscalls
from layerlab.engine.runtime.mountinfo import MountEntry, mount_tree, parse_line, read_mountinfo


def entry(mount_id, parent_id, mount_point, options="rw,relatime"):
    return MountEntry(mount_id, parent_id, mount_point, tuple(options.split(",")))


@pytest.fixture
def no_mount_setattr(monkeypatch):
    """Make mount_setattr(2) fail with ENOSYS, as on Linux before 5.12, in this process and its forks."""

    def report_enosys(path, attr_set, flags=syscalls.AT_RECURSIVE):
        raise syscalls.SyscallError(f"mount_setattr({path!r}) failed: forced ENOSYS", errno=errno.ENOSYS)

    monkeypatch.setattr(syscalls, "mount_setattr", report_enosys)


def test_parse_line_unescapes_mount_point():
    line = rb"36 35 98:0 /mnt1 /mnt/with\040space\134x rw,nosuid,noatime master:1 - ext3 /dev/root rw,errors=continue"

    parsed = parse_line(line + b"\n")

    assert parsed == MountEntry(36, 35, "/mnt/with space\\x", ("rw", "nosuid", "noatime"))


def test_remount_flags_keep_options():
    flags = entry(1, 0, "/x", "rw,nosuid,nodev,noexec,relatime").remount_flags()

    expected = (syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY | syscalls.MS_NOSUID
                | syscalls.MS_NODEV | syscalls.MS_NOEXEC | syscalls.MS_RELATIME)
    assert flags == expected


def test_remount_flags_keep_strictatime():
    flags = entry(1, 0, "/x", "rw").remount_flags()

    assert flags & syscalls.MS_STRICTATIME
    assert not flags & (syscalls.MS_RELATIME | syscalls.MS_NOATIME)


def test_mount_tree_parents_first():
    entries = [
        entry(1, 0, "/"),
        entry(6, 4, "/t/a/c"),  # listed before its parent, as after a move
        entry(3, 1, "/t"),
        entry(4, 3, "/t/a"),
        entry(2, 4, "/t/a/b"),
        entry(5, 1, "/other"),
    ]

    tree = mount_tree("/t", entries)

    assert [e.mount_point for e in tree] == ["/t", "/t/a", "/t/a/c", "/t/a/b"]


def test_mount_tree_skips_covered_mounts():
    entries = [
        entry(1, 0, "/"),
        entry(3, 1, "/t"),
        entry(4, 3, "/t/hidden"),  # below a mount that another mount on /t covers
        entry(5, 3, "/t"),
        entry(6, 5, "/t/seen"),
    ]

    tree = mount_tree("/t", entries)

    assert [e.mount_id for e in tree] == [5, 6]


def test_mount_tree_rejects_non_mount_point():
    with pytest.raises(ContainerError, match="not a mount point"):
        mount_tree("/nowhere", [entry(1, 0, "/")])


def test_fallback_makes_submounts_readonly(rootfs, tmp_path, no_mount_setattr):
    report = tmp_path / "report.json"

    def bind_and_make_readonly(merged):
        source = os.path.join(merged, "source")
        target = os.path.join(merged, "target")
        for path in (source, os.path.join(source, "sub"), target):
            os.mkdir(path)
        syscalls.mount("tmpfs", os.path.join(source, "sub"), "tmpfs",
                       syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
        os.mkdir(os.path.join(source, "sub", "deeper"))
        syscalls.mount("tmpfs", os.path.join(source, "sub", "deeper"), "tmpfs", 0)
        syscalls.mount(source, target, None, syscalls.MS_BIND | syscalls.MS_REC)

        rootfs_module._make_tree_readonly(target)

        options = {e.mount_point[len(merged):]: list(e.options) for e in read_mountinfo()
                   if e.mount_point.startswith(merged + "/")}
        writable = {}
        for name in ("target", "target/sub", "target/sub/deeper", "source/sub", "source/sub/deeper"):
            try:
                with open(os.path.join(merged, name, "probe"), "w"):
                    pass
                writable[name] = True
            except OSError as error:
                writable[name] = errno.errorcode[error.errno]
        report.write_text(json.dumps({"options": options, "writable": writable}))

    run_in_rootfs(rootfs, bind_and_make_readonly)
    result = json.loads(report.read_text())
    options, writable = result["options"], result["writable"]

    assert "ro" in options["/target"]
    assert "ro" in options["/target/sub"]
    assert "ro" in options["/target/sub/deeper"]
    assert {"nosuid", "nodev", "noexec"} <= set(options["/target/sub"])
    assert "rw" in options["/source/sub"]
    assert writable["target"] == "EROFS"
    assert writable["target/sub"] == "EROFS"
    assert writable["target/sub/deeper"] == "EROFS"
    assert writable["source/sub"] is True
    assert writable["source/sub/deeper"] is True


def test_fallback_host_sys_readonly(run, no_mount_setattr):
    # With the host's network, /sys is a recursive bind of the host's /sys,
    # whose submounts (such as /sys/fs/cgroup) must turn read-only too.
    code, output = run("cat", "/proc/self/mounts", network="host")
    sys_mounts = [line.split() for line in output.splitlines() if line.split()[1].startswith("/sys")]

    assert code == 0
    assert len(sys_mounts) > 1
    for fields in sys_mounts:
        assert fields[3].split(",")[0] == "ro", fields
