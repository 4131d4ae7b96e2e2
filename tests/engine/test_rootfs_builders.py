"""Base-image root file systems built from Debian packages."""

import hashlib
import os
import shutil
import stat
import tarfile
import tempfile

import pytest

from layerlab.engine import rootfs_builders
from layerlab.engine.errors import InvalidArgumentError, NotFoundError

EPOCH = 1700000000


def members(tar_path):
    with tarfile.open(tar_path) as tar:
        return {member.name.removeprefix("./"): member for member in tar.getmembers()}


def read_member(tar_path, name):
    with tarfile.open(tar_path) as tar:
        for member in tar.getmembers():
            if member.name.removeprefix("./") == name:
                return tar.extractfile(member).read().decode()
    raise KeyError(name)


def sha256_of(path):
    with open(path, "rb") as stream:
        return hashlib.sha256(stream.read()).hexdigest()


def test_busybox_has_binary_and_shell(busybox_rootfs_tar):
    entries = members(busybox_rootfs_tar)

    assert entries["bin/busybox"].isfile()
    assert entries["bin/busybox"].mode == 0o755
    assert entries["bin/sh"].issym()
    assert entries["bin/sh"].linkname == "busybox"


def test_busybox_applet_links_are_relative(busybox_rootfs_tar):
    links = [member for member in members(busybox_rootfs_tar).values() if member.issym()]

    assert len(links) > 100
    for link in links:
        assert not link.linkname.startswith("/"), link.name
        assert link.linkname.endswith("busybox"), link.name


def test_busybox_entries_owned_by_root(busybox_rootfs_tar):
    for member in members(busybox_rootfs_tar).values():
        assert member.uid == 0, member.name
        assert member.gid == 0, member.name
        assert member.uname == "", member.name


def test_busybox_directory_modes(busybox_rootfs_tar):
    entries = members(busybox_rootfs_tar)

    assert entries["tmp"].mode == 0o1777
    assert entries["root"].mode == 0o700
    for name in ("dev", "proc", "sys", "home", "var", "etc"):
        assert entries[name].isdir(), name


def test_busybox_has_no_runtime_files(busybox_rootfs_tar):
    entries = members(busybox_rootfs_tar)

    for name in ("etc/hosts", "etc/hostname", "etc/resolv.conf"):
        assert name not in entries
    assert not [name for name in entries if name.startswith("dev/")]


def test_busybox_accounts(busybox_rootfs_tar):
    passwd = read_member(busybox_rootfs_tar, "etc/passwd")
    group = read_member(busybox_rootfs_tar, "etc/group")

    assert passwd.splitlines()[0] == "root:x:0:0:root:/root:/bin/sh"
    assert "nobody:x:65534:65534:" in passwd
    assert "daemon:x:1:1:" in passwd
    assert group.splitlines()[0] == "root:x:0:"
    assert "nogroup:x:65534:" in group


def test_busybox_metadata_labels(busybox_rootfs):
    labels = busybox_rootfs["labels"]

    assert busybox_rootfs["package"] == "busybox-static"
    assert busybox_rootfs["cmd"] == ["sh"]
    assert labels["org.opencontainers.image.source"] == "debian:busybox-static"
    assert labels["org.opencontainers.image.version"] == busybox_rootfs["version"]
    assert labels["dev.layerlab.bootstrap"]


def test_busybox_metadata_digest_matches(busybox_rootfs):
    assert sha256_of(busybox_rootfs["path"]) == busybox_rootfs["tar_sha256"]


def test_busybox_build_is_deterministic(tmp_path):
    first = rootfs_builders.build_busybox_rootfs(str(tmp_path / "a.tar"), source_date_epoch=EPOCH)
    second = rootfs_builders.build_busybox_rootfs(str(tmp_path / "b.tar"), source_date_epoch=EPOCH)

    assert first["tar_sha256"] == second["tar_sha256"]
    assert sha256_of(tmp_path / "a.tar") == sha256_of(tmp_path / "b.tar")
    assert first["source_date_epoch"] == EPOCH


def test_busybox_mtimes_clamped(tmp_path):
    rootfs_builders.build_busybox_rootfs(str(tmp_path / "a.tar"), source_date_epoch=EPOCH)

    for member in members(tmp_path / "a.tar").values():
        assert member.mtime <= EPOCH, member.name


def test_busybox_epoch_changes_digest(tmp_path):
    first = rootfs_builders.build_busybox_rootfs(str(tmp_path / "a.tar"), source_date_epoch=EPOCH)
    second = rootfs_builders.build_busybox_rootfs(str(tmp_path / "b.tar"), source_date_epoch=EPOCH - 1)

    assert first["tar_sha256"] != second["tar_sha256"]


def test_busybox_epoch_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))

    meta = rootfs_builders.build_busybox_rootfs(str(tmp_path / "a.tar"))

    assert meta["source_date_epoch"] == EPOCH


def test_busybox_invalid_epoch_rejected(tmp_path):
    with pytest.raises(InvalidArgumentError, match="SOURCE_DATE_EPOCH"):
        rootfs_builders.build_busybox_rootfs(str(tmp_path / "a.tar"), source_date_epoch="yesterday")

    assert not (tmp_path / "a.tar").exists()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("bin/sh", "busybox"),
        ("sbin/init", "../bin/busybox"),
        ("usr/bin/[", "../../bin/busybox"),
    ],
)
def test_relative_link(path, expected):
    assert rootfs_builders.relative_link(path) == expected


def test_debian_missing_mmdebstrap_names_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(NotFoundError, match="apt-get install -y mmdebstrap"):
        rootfs_builders.build_debian_rootfs("bookworm", str(tmp_path / "d.tar"))


@pytest.mark.parametrize("suite", ["", "../etc", "--help"])
def test_debian_invalid_suite_rejected(tmp_path, suite):
    with pytest.raises(InvalidArgumentError, match="invalid Debian suite"):
        rootfs_builders.build_debian_rootfs(suite, str(tmp_path / "d.tar"))


def test_debian_source_lines():
    lines = rootfs_builders.source_lines("bookworm", "http://deb.debian.org/debian")

    assert lines == [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]


def test_debian_sid_has_no_updates():
    lines = rootfs_builders.source_lines("sid", "http://deb.debian.org/debian")

    assert lines == ["deb http://deb.debian.org/debian sid main"]


def test_unshare_tmpdir_beside_searchable_tar():
    # pytest's tmp_path sits in a 0700 folder, so this one is made in /var/tmp.
    scratch = tempfile.mkdtemp(prefix="layerlab-test-", dir="/var/tmp")
    try:
        os.chmod(scratch, 0o755)

        path = rootfs_builders.unshare_tmpdir(os.path.join(scratch, "rootfs.tar"))

        assert os.path.dirname(path) == scratch
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o711
    finally:
        shutil.rmtree(scratch)


def test_unshare_tmpdir_skips_private_folders(tmp_path):
    # A 0700 scratch folder in a 0700 parent, as a student's TMPDIR would be.
    parent = tmp_path / "private"
    scratch = parent / "scratch"
    scratch.mkdir(parents=True)
    scratch.chmod(0o700)
    parent.chmod(0o700)

    path = rootfs_builders.unshare_tmpdir(str(scratch / "rootfs.tar"))
    try:
        assert os.path.dirname(path) in ("/var/tmp", "/tmp")
        assert rootfs_builders.searchable_by_others(path)
    finally:
        os.rmdir(path)


def test_debian_os_release(debian_rootfs_tar):
    os_release = read_member(debian_rootfs_tar, "etc/os-release")

    assert "VERSION_CODENAME=bookworm" in os_release
    assert 'ID=debian' in os_release


def test_debian_apt_sources(debian_rootfs_tar):
    sources = read_member(debian_rootfs_tar, "etc/apt/sources.list")

    assert "bookworm main" in sources
    assert "bookworm-updates main" in sources
    assert "bookworm-security main" in sources


def test_debian_apt_lists_and_caches_clean(debian_rootfs_tar):
    entries = members(debian_rootfs_tar)
    lists = [name for name in entries if name.startswith("var/lib/apt/lists/")]
    caches = [name for name in entries if name.startswith("var/cache/apt/") and name.endswith(".bin")]
    debs = [name for name in entries if name.endswith(".deb")]

    assert set(lists) <= {"var/lib/apt/lists/lock", "var/lib/apt/lists/partial"}
    assert caches == []
    assert debs == []


def test_debian_has_no_host_files(debian_rootfs_tar):
    entries = members(debian_rootfs_tar)

    assert "etc/resolv.conf" not in entries
    assert "etc/hostname" not in entries
    assert entries["dev"].isdir()
    assert not [name for name in entries if name.startswith("dev/")]


def test_debian_has_bash_and_apt(debian_rootfs_tar):
    entries = members(debian_rootfs_tar)

    assert "usr/bin/bash" in entries
    assert "usr/bin/apt-get" in entries


def test_debian_metadata(debian_rootfs):
    labels = debian_rootfs["labels"]

    assert debian_rootfs["suite"] == "bookworm"
    assert debian_rootfs["cmd"] == ["bash"]
    assert debian_rootfs["mmdebstrap_version"]
    assert labels["org.opencontainers.image.source"] == "debian:bookworm"
    assert labels["dev.layerlab.bootstrap"].startswith("mmdebstrap ")
    assert sha256_of(debian_rootfs["path"]) == debian_rootfs["tar_sha256"]
