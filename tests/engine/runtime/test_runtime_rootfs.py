"""The container's root file system: the overlay, /proc, /dev, /sys, masked and read-only paths."""

import os
import shutil
import stat

import pytest

from layerlab.engine.errors import ContainerError
from layerlab.engine.runtime import RootfsSpec


def is_whiteout(path):
    info = os.lstat(path)
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == os.makedev(0, 0)


def test_write_lands_in_upper(run, rootfs, busybox_lower):
    code, _ = run("sh", "-c", "echo data > /newfile")
    assert code == 0
    with open(os.path.join(rootfs.upperdir, "newfile")) as file:
        assert file.read() == "data\n"
    assert not os.path.exists(os.path.join(busybox_lower, "newfile"))


def test_rm_creates_whiteout(run, rootfs, busybox_lower):
    code, _ = run("rm", "/etc/motd")
    assert code == 0
    assert is_whiteout(os.path.join(rootfs.upperdir, "etc/motd"))
    assert os.path.exists(os.path.join(busybox_lower, "etc/motd"))


def test_empty_lowerdirs(run, tmp_path):
    upper = tmp_path / "empty-upper"
    os.makedirs(upper / "bin")
    shutil.copy("/bin/busybox", upper / "bin/busybox")
    run.rootfs = RootfsSpec(lowerdirs=[], upperdir=str(upper), workdir=str(tmp_path / "work"))
    code, output = run("/bin/busybox", "echo", "no layers")
    assert code == 0
    assert output == "no layers\n"


def test_many_long_lowerdirs(run, rootfs, tmp_path):
    # 60 layers of 200-byte paths exceed the page that mount(2) accepts.
    layers = []
    for index in range(60):
        layer = tmp_path / "layers" / ("l" * 190) / f"{index:03d}"
        layer.mkdir(parents=True)
        (layer / f"file{index}").write_text(str(index))
        layers.append(str(layer))
    run.rootfs = RootfsSpec(lowerdirs=layers + rootfs.lowerdirs, upperdir=rootfs.upperdir, workdir=rootfs.workdir)

    code, output = run("sh", "-c", "cat /file0 /file59")
    assert code == 0
    assert output == "059"


def test_top_layer_wins(run, rootfs, tmp_path):
    top = tmp_path / "top"
    (top / "etc").mkdir(parents=True)
    (top / "etc/motd").write_text("from the top layer\n")
    run.rootfs = RootfsSpec(lowerdirs=[str(top)] + rootfs.lowerdirs, upperdir=rootfs.upperdir, workdir=rootfs.workdir)

    code, output = run("cat", "/etc/motd")
    assert output == "from the top layer\n"


def test_proc_sys_is_readonly(run):
    code, output = run("sh", "-c", "grep ' /proc/sys ' /proc/self/mounts; echo 1 > /proc/sys/kernel/domainname")
    assert code != 0
    assert output.split()[3].startswith("ro,")


def test_mount_is_denied(run):
    code, _ = run("mount", "-t", "tmpfs", "tmpfs", "/tmp")
    assert code != 0


def test_masked_paths(run):
    code, output = run("sh", "-c", "cat /proc/keys /proc/timer_list; ls /sys/firmware; [ ! -e /proc/kcore ] || wc -c < /proc/kcore")
    assert code == 0
    assert output.strip() in ("", "0")


def test_dev_has_standard_nodes_only(run):
    code, output = run("ls", "-A", "/dev")
    assert code == 0
    expected = ["fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm",
                "stderr", "stdin", "stdout", "tty", "urandom", "zero"]
    # /dev/core links to /proc/kcore, which kernels without CONFIG_PROC_KCORE lack.
    if os.path.exists("/proc/kcore"):
        expected.append("core")
    assert sorted(output.split()) == sorted(expected)


def test_dev_null_and_zero_work(run):
    code, output = run("sh", "-c", "echo gone > /dev/null && head -c 4 /dev/zero | wc -c && ls -l /dev/null")
    assert code == 0
    lines = output.splitlines()
    assert lines[0].strip() == "4"
    assert lines[1].startswith("crw-rw-rw-")


def test_sys_is_readonly(run):
    code, _ = run("sh", "-c", "touch /sys/kernel/x")
    assert code != 0


@pytest.mark.parametrize("network", ["host", "none"])
def test_sys_mounted(run, network):
    code, output = run("ls", "/sys/class/net", network=network)
    assert code == 0
    assert "lo" in output.split()


def test_network_none_has_only_loopback_up(run):
    code, output = run("cat", "/sys/class/net/lo/operstate", "/proc/net/dev", network="none")
    lines = output.splitlines()
    interfaces = [line.split(":")[0].strip() for line in lines[3:]]
    assert code == 0
    assert lines[0] == "unknown"  # lo reports "unknown" when up
    assert interfaces == ["lo"]


def test_readonly_rootfs(run):
    code, output = run("sh", "-c", "touch /x || echo denied; echo ok > /dev/shm/x && echo tmpfs ok", readonly_rootfs=True)
    assert output.split("\n")[:2] == ["denied", "tmpfs ok"]


def test_etc_files_bound_read_write(run, tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    hostname = tmp_path / "hostname"
    hostname.write_text("testbox\n")

    code, output = run(
        "sh", "-c", "cat /etc/hosts /etc/hostname; echo '10.0.0.1 db' >> /etc/hosts",
        etc_files={"/etc/hosts": str(hosts), "/etc/hostname": str(hostname)},
    )
    assert code == 0
    assert output == "127.0.0.1 localhost\ntestbox\n"
    assert hosts.read_text() == "127.0.0.1 localhost\n10.0.0.1 db\n"


def test_symlinked_mountpoint_rejected(run, rootfs):
    os.makedirs(os.path.join(rootfs.upperdir, "etc"))
    os.symlink("/etc/passwd", os.path.join(rootfs.upperdir, "etc/resolv.conf"))
    with pytest.raises(ContainerError, match="symbolic link"):
        run("true", etc_files={"/etc/resolv.conf": "/etc/resolv.conf"})


def test_privileged_skips_masks(run):
    code, output = run("sh", "-c", "grep -c ' /proc/sys ' /proc/self/mounts", privileged=True)
    assert output.strip() == "0"
