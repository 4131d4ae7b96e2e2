"""Layer tars on real files: whiteouts, links, modes, xattrs, traversal and overlay diffs."""

import hashlib
import io
import logging
import os
import shutil
import stat
import struct
import subprocess
import tarfile
import tempfile
import uuid

import pytest

from layerlab.engine.archive import (
    Change,
    HashingWriter,
    apply_layer,
    changes,
    extract_layer,
    tar_directory,
    write_changes,
    write_layer,
)
from layerlab.engine.errors import InvalidArgumentError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for devices, owners and overlay mounts")

# security.capability as VFS_CAP_REVISION_2 with the effective flag, granting CAP_NET_RAW (bit 13).
NET_RAW_CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)


@pytest.fixture
def workdir():
    path = tempfile.mkdtemp(prefix="layerlab-archive-")
    try:
        yield path
    finally:
        shutil.rmtree(path)


def write(path, text="", mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)


def layer_bytes(upper, **options):
    buffer = io.BytesIO()
    info = write_layer(upper, buffer, **options)
    return info, buffer.getvalue()


def members(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {member.name: member for member in tar}


def extract(data, dest, **options):
    os.makedirs(dest, exist_ok=True)
    extract_layer(io.BytesIO(data), dest, **options)


def make_tar(entries):
    """Build a tar from (TarInfo, bytes or None) pairs."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, content in entries:
            if content is None:
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def entry(name, kind=tarfile.REGTYPE, linkname="", mode=0o644):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    return info


def tree(root):
    """Describe every entry below root: type, mode, owner, content or target."""
    result = {}
    for directory, names, files in os.walk(root):
        for name in names + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            relative = os.path.relpath(path, root)
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as handle:
                    detail = handle.read()
            elif stat.S_ISLNK(st.st_mode):
                detail = os.readlink(path)
            else:
                detail = st.st_rdev
            result[relative] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, detail)
    return result


def mount_overlay(lowers, upper, work, merged):
    options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, merged], check=True)


def unmount(merged):
    subprocess.run(["umount", merged], check=True)


def test_hashing_writer_digest_and_size():
    sink = io.BytesIO()
    writer = HashingWriter(sink)

    writer.write(b"abc")
    writer.write(b"def")

    assert writer.size == 6
    assert writer.digest == "sha256:" + hashlib.sha256(b"abcdef").hexdigest()
    assert sink.getvalue() == b"abcdef"


def test_write_layer_digest_matches_bytes(workdir):
    upper = os.path.join(workdir, "upper")
    write(os.path.join(upper, "etc", "motd"), "hello\n")

    info, data = layer_bytes(upper)

    assert info.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert info.size == len(data)


def test_write_layer_names_and_order(workdir):
    upper = os.path.join(workdir, "upper")
    write(os.path.join(upper, "b", "z"), "z")
    write(os.path.join(upper, "a-b"), "x")
    write(os.path.join(upper, "a", "b"), "y")

    _, data = layer_bytes(upper)
    listing = subprocess.run(["tar", "-tf", "-"], input=data, capture_output=True, check=True).stdout.decode()

    assert listing.splitlines() == ["a/", "a/b", "a-b", "b/", "b/z"]


def test_write_layer_headers_numeric_owner(workdir):
    upper = os.path.join(workdir, "upper")
    write(os.path.join(upper, "file"), "data")
    os.chown(os.path.join(upper, "file"), 1234, 5678)

    _, data = layer_bytes(upper)
    member = members(data)["file"]

    assert (member.uid, member.gid) == (1234, 5678)
    assert member.uname == ""
    assert member.gname == ""


def test_gnu_tar_lists_layer(workdir):
    upper = os.path.join(workdir, "upper")
    write(os.path.join(upper, "bin", "tool"), "#!/bin/sh\n", 0o4755)
    os.symlink("tool", os.path.join(upper, "bin", "alias"))
    os.mknod(os.path.join(upper, "gone"), stat.S_IFCHR, 0)

    _, data = layer_bytes(upper)
    result = subprocess.run(["tar", "-tvf", "-"], input=data, capture_output=True, check=True)
    listing = result.stdout.decode()

    assert "-rwsr-xr-x 0/0" in listing
    assert "bin/alias -> tool" in listing
    assert ".wh.gone" in listing


def test_whiteout_round_trip(workdir):
    upper = os.path.join(workdir, "upper")
    write(os.path.join(upper, "etc", "keep"), "k")
    os.mknod(os.path.join(upper, "etc", "gone"), stat.S_IFCHR, 0)
    os.makedirs(os.path.join(upper, "opaque"))
    os.setxattr(os.path.join(upper, "opaque"), "trusted.overlay.opaque", b"y")
    write(os.path.join(upper, "opaque", "new"), "n")

    _, data = layer_bytes(upper)
    names = list(members(data))

    assert "etc/.wh.gone" in names
    assert "etc/gone" not in names
    assert names.index("opaque/.wh..wh..opq") == names.index("opaque") + 1
    assert "SCHILY.xattr.trusted.overlay.opaque" not in members(data)["opaque"].pax_headers

    dest = os.path.join(workdir, "snapshot")
    extract(data, dest)
    gone = os.lstat(os.path.join(dest, "etc", "gone"))

    assert stat.S_ISCHR(gone.st_mode)
    assert gone.st_rdev == 0
    assert os.getxattr(os.path.join(dest, "opaque"), "trusted.overlay.opaque") == b"y"
    assert not os.path.exists(os.path.join(dest, "etc", ".wh.gone"))
    assert not os.path.exists(os.path.join(dest, "opaque", ".wh..wh..opq"))


def test_extract_userns_uses_user_xattr(workdir):
    data = make_tar([(entry("dir", tarfile.DIRTYPE, mode=0o755), None), (entry("dir/.wh..wh..opq"), b""), (entry("dir/.wh.x"), b"")])
    dest = os.path.join(workdir, "snapshot")

    extract(data, dest, userns=True)

    assert os.getxattr(os.path.join(dest, "dir"), "user.overlay.opaque") == b"y"
    assert "trusted.overlay.opaque" not in os.listxattr(os.path.join(dest, "dir"))
    assert stat.S_ISCHR(os.lstat(os.path.join(dest, "dir", "x")).st_mode)


def test_round_trip_preserves_tree(workdir):
    upper = os.path.join(workdir, "upper")
    write(os.path.join(upper, "bin", "su"), "su", 0o4755)
    write(os.path.join(upper, "bin", "wall"), "wall", 0o2755)
    write(os.path.join(upper, "tmp", "sticky", "f"), "f")
    os.chmod(os.path.join(upper, "tmp", "sticky"), 0o1777)
    os.symlink("/bin/su", os.path.join(upper, "bin", "absolute"))
    os.symlink("../bin/su", os.path.join(upper, "tmp", "relative"))
    os.mknod(os.path.join(upper, "null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mkfifo(os.path.join(upper, "pipe"), 0o640)
    os.makedirs(os.path.join(upper, "readonly"))
    write(os.path.join(upper, "readonly", "inside"), "i")
    os.chmod(os.path.join(upper, "readonly"), 0o555)
    os.chown(os.path.join(upper, "bin", "wall"), 0, 5)

    _, data = layer_bytes(upper)
    dest = os.path.join(workdir, "snapshot")
    extract(data, dest)

    assert tree(dest) == tree(upper)


def test_round_trip_hardlinks(workdir):
    upper = os.path.join(workdir, "upper")
    write(os.path.join(upper, "a", "first"), "shared")
    os.makedirs(os.path.join(upper, "b"))
    os.link(os.path.join(upper, "a", "first"), os.path.join(upper, "b", "second"))

    _, data = layer_bytes(upper)
    second = members(data)["b/second"]

    assert second.islnk()
    assert second.linkname == "a/first"

    dest = os.path.join(workdir, "snapshot")
    extract(data, dest)
    first_stat = os.stat(os.path.join(dest, "a", "first"))
    second_stat = os.stat(os.path.join(dest, "b", "second"))

    assert first_stat.st_ino == second_stat.st_ino
    assert first_stat.st_nlink == 2


def test_round_trip_xattrs(workdir):
    upper = os.path.join(workdir, "upper")
    tool = os.path.join(upper, "ping")
    write(tool, "ping", 0o755)
    os.setxattr(tool, "security.capability", NET_RAW_CAPABILITY)
    os.setxattr(tool, "user.comment", b"\xff\x00binary")
    os.setxattr(tool, "trusted.overlay.origin", b"skip me")

    _, data = layer_bytes(upper)
    headers = members(data)["ping"].pax_headers

    assert "SCHILY.xattr.security.capability" in headers
    assert "SCHILY.xattr.trusted.overlay.origin" not in headers

    dest = os.path.join(workdir, "snapshot")
    extract(data, dest)
    extracted = os.path.join(dest, "ping")

    assert os.getxattr(extracted, "security.capability") == NET_RAW_CAPABILITY
    assert os.getxattr(extracted, "user.comment") == b"\xff\x00binary"
    assert "trusted.overlay.origin" not in os.listxattr(extracted)


def test_write_layer_deterministic(workdir):
    upper = os.path.join(workdir, "upper")
    write(os.path.join(upper, "etc", "a"), "a")
    write(os.path.join(upper, "etc", "b"), "b")

    first, _ = layer_bytes(upper)
    second, _ = layer_bytes(upper)

    assert first.digest == second.digest


def test_source_date_epoch_clamps_mtimes(workdir):
    epoch = 1_000_000_000
    trees = []
    for index, mtime in enumerate((1_500_000_000, 1_700_000_000)):
        upper = os.path.join(workdir, f"upper{index}")
        write(os.path.join(upper, "dir", "file"), "same")
        for path in (os.path.join(upper, "dir", "file"), os.path.join(upper, "dir")):
            os.utime(path, (mtime, mtime))
        trees.append(upper)
    write(os.path.join(workdir, "old", "file"), "old")
    os.utime(os.path.join(workdir, "old", "file"), (epoch - 10, epoch - 10))

    first, data = layer_bytes(trees[0], source_date_epoch=epoch)
    second, _ = layer_bytes(trees[1], source_date_epoch=epoch)
    _, old = layer_bytes(os.path.join(workdir, "old"), source_date_epoch=epoch)

    assert first.digest == second.digest
    assert {member.mtime for member in members(data).values()} == {epoch}
    assert members(old)["file"].mtime == epoch - 10


def test_write_layer_rejects_redirect_dir(workdir):
    upper = os.path.join(workdir, "upper")
    os.makedirs(os.path.join(upper, "moved"))
    os.setxattr(os.path.join(upper, "moved"), "trusted.overlay.redirect", b"/old")

    with pytest.raises(InvalidArgumentError, match="redirect_dir=off"):
        layer_bytes(upper)


def test_extract_traversal_stays_inside(workdir, caplog):
    dest = os.path.join(workdir, "dest")
    outside = os.path.join(workdir, "outside")
    os.makedirs(outside)
    marker = f"layerlab-escape-{uuid.uuid4().hex}"
    data = make_tar([
        (entry("../evil"), b"evil"),
        (entry(f"/{marker}"), b"abs"),
        (entry("root", tarfile.SYMTYPE, linkname="/"), None),
        (entry("root/etc/passwd"), b"x:0:0"),
        (entry(f"root/{marker}-via-root"), b"root"),
        (entry("up", tarfile.SYMTYPE, linkname="../../.."), None),
        (entry("up/x"), b"up"),
        (entry("host", tarfile.SYMTYPE, linkname=outside), None),
        (entry("host/planted"), b"planted"),
        (entry("link", tarfile.LNKTYPE, linkname="../../etc/passwd"), None),
        (entry("link-via-root", tarfile.LNKTYPE, linkname="root/etc/passwd"), None),
    ])

    with caplog.at_level(logging.WARNING):
        extract(data, dest)

    assert sorted(os.listdir(workdir)) == ["dest", "outside"]
    assert os.listdir(outside) == []
    assert not os.path.exists(f"/{marker}")
    assert not os.path.exists(f"/{marker}-via-root")
    with open(os.path.join(dest, "evil")) as handle:
        assert handle.read() == "evil"
    assert os.path.isfile(os.path.join(dest, marker))
    assert os.path.isfile(os.path.join(dest, f"{marker}-via-root"))
    with open(os.path.join(dest, "etc", "passwd")) as handle:
        assert handle.read() == "x:0:0"
    assert os.path.isfile(os.path.join(dest, "x"))
    assert os.path.isfile(os.path.join(dest, outside.lstrip("/"), "planted"))
    link_stat = os.lstat(os.path.join(dest, "link"))
    assert link_stat.st_ino == os.lstat(os.path.join(dest, "etc", "passwd")).st_ino
    assert os.lstat(os.path.join(dest, "link-via-root")).st_ino == link_stat.st_ino
    assert "points outside the root" in caplog.text


def test_extract_hardlink_to_missing_target_warns(workdir, caplog):
    dest = os.path.join(workdir, "dest")
    data = make_tar([(entry("link", tarfile.LNKTYPE, linkname="../../../etc/shadow"), None)])

    with caplog.at_level(logging.WARNING):
        extract(data, dest)

    assert os.listdir(dest) == []
    assert "skipping hardlink 'link'" in caplog.text


def test_extract_replaces_dir_with_later_symlink(workdir):
    dest = os.path.join(workdir, "dest")
    outside = os.path.join(workdir, "outside")
    os.makedirs(outside, mode=0o700)
    data = make_tar([
        (entry("d", tarfile.DIRTYPE, mode=0o777), None),
        (entry("d", tarfile.SYMTYPE, linkname=outside), None),
    ])

    extract(data, dest)

    assert os.readlink(os.path.join(dest, "d")) == outside
    assert stat.S_IMODE(os.stat(outside).st_mode) == 0o700


def test_extract_directory_mtime_after_contents(workdir):
    dest = os.path.join(workdir, "dest")
    directory = entry("dir", tarfile.DIRTYPE, mode=0o755)
    directory.mtime = 1_234_567_890
    data = make_tar([(directory, None), (entry("dir/file"), b"data")])

    extract(data, dest)

    assert os.stat(os.path.join(dest, "dir")).st_mtime == 1_234_567_890


def test_apply_layer_deletes_and_empties(workdir):
    rootfs = os.path.join(workdir, "rootfs")
    write(os.path.join(rootfs, "bin", "ls"), "ls")
    write(os.path.join(rootfs, "bin", "sh"), "sh")
    write(os.path.join(rootfs, "var", "cache", "old"), "old")
    write(os.path.join(rootfs, "var", "cache", "sub", "deep"), "deep")
    data = make_tar([
        (entry("bin/.wh.ls"), b""),
        (entry("var/cache", tarfile.DIRTYPE, mode=0o755), None),
        (entry("var/cache/fresh"), b"fresh"),
        (entry("var/cache/.wh..wh..opq"), b""),
        (entry("new"), b"new"),
    ])

    apply_layer(io.BytesIO(data), rootfs)

    assert sorted(os.listdir(os.path.join(rootfs, "bin"))) == ["sh"]
    assert os.listdir(os.path.join(rootfs, "var", "cache")) == ["fresh"]
    assert os.path.isfile(os.path.join(rootfs, "new"))


def test_tar_directory_owner_override(workdir):
    context = os.path.join(workdir, "context")
    write(os.path.join(context, "Dockerfile"), "FROM scratch\n")
    os.chown(os.path.join(context, "Dockerfile"), 1000, 1000)
    os.mknod(os.path.join(context, "device"), stat.S_IFCHR, 0)
    buffer = io.BytesIO()

    tar_directory(context, buffer, owner=(0, 0))
    entries = members(buffer.getvalue())

    assert (entries["Dockerfile"].uid, entries["Dockerfile"].gid) == (0, 0)
    assert entries["device"].ischr()


def make_busybox_like(lower):
    write(os.path.join(lower, "bin", "ls"), "ls", 0o755)
    write(os.path.join(lower, "bin", "sh"), "sh", 0o755)
    write(os.path.join(lower, "etc", "passwd"), "root:x:0:0\n")
    write(os.path.join(lower, "var", "cache", "old"), "old")


def test_changes_on_overlay(workdir):
    lower = os.path.join(workdir, "lower")
    upper = os.path.join(workdir, "upper")
    work = os.path.join(workdir, "work")
    merged = os.path.join(workdir, "merged")
    make_busybox_like(lower)
    for path in (upper, work, merged):
        os.makedirs(path)

    mount_overlay([lower], upper, work, merged)
    try:
        os.unlink(os.path.join(merged, "bin", "ls"))
        write(os.path.join(merged, "new"), "x\n")
        with open(os.path.join(merged, "etc", "passwd"), "a") as handle:
            handle.write("user:x:1000:1000\n")
        shutil.rmtree(os.path.join(merged, "var", "cache"))
        write(os.path.join(merged, "var", "cache", "fresh"), "fresh")
        write(os.path.join(merged, "opt", "app", "run"), "run")
    finally:
        unmount(merged)

    result = [str(change) for change in changes(upper, [lower])]

    assert result == [
        "C /bin",
        "D /bin/ls",
        "C /etc/passwd",
        "A /new",
        "A /opt",
        "A /opt/app",
        "A /opt/app/run",
        "C /var",
        "D /var/cache",
        "A /var/cache/fresh",
    ]


def test_committed_layer_reproduces_merged_view(workdir):
    lower = os.path.join(workdir, "lower")
    upper = os.path.join(workdir, "upper")
    work = os.path.join(workdir, "work")
    merged = os.path.join(workdir, "merged")
    snapshot = os.path.join(workdir, "snapshot")
    make_busybox_like(lower)
    for path in (upper, work, merged, snapshot):
        os.makedirs(path)

    mount_overlay([lower], upper, work, merged)
    try:
        os.unlink(os.path.join(merged, "bin", "ls"))
        shutil.rmtree(os.path.join(merged, "var", "cache"))
        write(os.path.join(merged, "var", "cache", "fresh"), "fresh")
        expected = tree(merged)
        listed = changes(upper, [lower])
        from_changes = io.BytesIO()
        write_changes(merged, listed, from_changes)
    finally:
        unmount(merged)

    _, data = layer_bytes(upper)
    extract(data, snapshot)
    # Two lower dirs and no upper dir give a read-only overlay of the image.
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={snapshot}:{lower}", merged], check=True)
    try:
        assert tree(merged) == expected
    finally:
        unmount(merged)

    flattened = os.path.join(workdir, "flattened")
    shutil.copytree(lower, flattened, symlinks=True)
    apply_layer(io.BytesIO(from_changes.getvalue()), flattened)
    assert tree(flattened) == expected


def test_changes_lower_whiteout_hides_path(workdir):
    base = os.path.join(workdir, "base")
    middle = os.path.join(workdir, "middle")
    upper = os.path.join(workdir, "upper")
    write(os.path.join(base, "etc", "old"), "old")
    os.makedirs(os.path.join(middle, "etc"))
    os.mknod(os.path.join(middle, "etc", "old"), stat.S_IFCHR, 0)
    write(os.path.join(upper, "etc", "old"), "again")
    shutil.copystat(os.path.join(base, "etc"), os.path.join(upper, "etc"))
    shutil.copystat(os.path.join(base, "etc"), os.path.join(middle, "etc"))

    result = changes(upper, [middle, base])

    assert Change("A", "/etc/old") in result
