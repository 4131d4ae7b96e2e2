"""save and load given bad archives, bad paths or no input: one clear line each, and nothing stored."""

import io
import json
import os
import stat
import subprocess
import sys
import tarfile

import pytest

from layerlab.engine.api import Engine
from layerlab.engine.errors import LayerlabError
from layerlab.engine.transfer.archives import load, save


def saved_archive(engine, name, tmp_path):
    archive = tmp_path / "good.tar"
    with open(archive, "wb") as target:
        save(engine, [name], target)
    return archive


def tar_with(path, members):
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def store_is_empty(root):
    engine = Engine(str(root))
    return not engine.images.entries() and not list(engine.store.iter_blobs())


@pytest.mark.parametrize("size", [3 * 1024, 1024 * 1024])
def test_load_truncated_archive(cli, engine, busybox, tmp_path, size):
    good = saved_archive(engine, "busybox", tmp_path)
    truncated = tmp_path / "trunc.tar"
    truncated.write_bytes(good.read_bytes()[:size])
    other = tmp_path / "other"

    result = subprocess.run([sys.executable, "-m", "layerlab", "load", "-i", str(truncated)],
                            capture_output=True, text=True, timeout=120, check=False,
                            env=dict(os.environ, LAYERLAB_ROOT=str(other)))

    assert result.returncode != 0
    assert result.stderr == f"layerlab: invalid archive {truncated}: it ends early (truncated?): " \
                            "save the images again and load the whole file\n"
    assert store_is_empty(other)


def test_load_garbage_from_stdin(cli, store_root):
    result = cli("load", input="this is not an archive\n" * 100)

    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert "invalid archive standard input: it is not a tar file" in result.stderr
    assert str(store_root / "tmp") not in result.stderr
    assert os.listdir(store_root / "tmp") == []


def test_load_empty_stdin(cli, store_root):
    result = cli("load", input="")

    assert result.returncode != 0
    assert "requested load from stdin, but stdin is empty" in result.stderr


def test_load_terminal_stdin_rejected(store_root):
    controller, terminal = os.openpty()
    try:
        result = subprocess.run([sys.executable, "-m", "layerlab", "load"], stdin=terminal,
                                capture_output=True, text=True, timeout=60, check=False,
                                env=dict(os.environ, LAYERLAB_ROOT=str(store_root)))
    finally:
        os.close(terminal)
        os.close(controller)

    assert result.returncode != 0
    assert "requested load from stdin, but stdin is empty: pass -i FILE" in result.stderr


@pytest.mark.parametrize("members, expected", [
    ({"manifest.json": b"[]"}, "its manifest.json lists no images"),
    ({"oci-layout": b"{}", "index.json": b'{"schemaVersion": 2, "manifests": []}'}, "its index.json lists no images"),
    ({"oci-layout": b"{}", "index.json": b"[]"}, "index.json must be an object"),
])
def test_load_archive_without_images(engine, tmp_path, members, expected):
    archive = tmp_path / "empty-images.tar"
    tar_with(archive, members)

    with pytest.raises(LayerlabError) as caught:
        load(engine, str(archive))

    assert expected in str(caught.value)
    assert str(archive) in str(caught.value)


@pytest.mark.parametrize("digits", [12, 64])
def test_cli_save_by_id_writes_no_tag(cli, engine, busybox, tmp_path, digits):
    archive = tmp_path / "by-id.tar"
    image_id = busybox.id.removeprefix("sha256:")[:digits]

    saved = cli("save", "-o", archive, image_id)
    with tarfile.open(archive) as opened:
        manifest = json.load(opened.extractfile("manifest.json"))
        names = opened.getnames()
    other = tmp_path / "other"
    loaded = subprocess.run([sys.executable, "-m", "layerlab", "load", "-i", str(archive)],
                            capture_output=True, text=True, timeout=120, check=False,
                            env=dict(os.environ, LAYERLAB_ROOT=str(other)))

    assert saved.returncode == 0, saved.stderr
    assert manifest[0]["RepoTags"] is None
    assert "repositories" not in names
    assert loaded.stdout == f"Loaded image ID: {busybox.id}\n", loaded.stderr
    assert [entry.reference for entry in Engine(str(other)).images.entries()] == [None]


def test_cli_save_by_tag_still_names_it(cli, engine, busybox, tmp_path):
    archive = tmp_path / "by-tag.tar"

    saved = cli("save", "-o", archive, "busybox")
    with tarfile.open(archive) as opened:
        manifest = json.load(opened.extractfile("manifest.json"))

    assert saved.returncode == 0, saved.stderr
    assert manifest[0]["RepoTags"] == ["busybox:latest"]


def test_cli_save_to_missing_directory(cli, busybox, tmp_path):
    target = tmp_path / "nonexistent" / "dir" / "x.tar"

    result = cli("save", "-o", target, "busybox")

    assert result.returncode != 0
    assert result.stderr == (f"layerlab: cannot write {target}: directory {target.parent} does not exist: "
                             "create it first\n")


def test_cli_save_to_directory(cli, busybox, tmp_path):
    result = cli("save", "-o", tmp_path, "busybox")

    assert result.returncode != 0
    assert f"cannot write {tmp_path}: it is a directory" in result.stderr
    assert ".tmp-" not in result.stderr
    assert [name for name in os.listdir(tmp_path.parent) if ".tmp-" in name] == []


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
def test_cli_save_into_device_keeps_it(cli, busybox, tmp_path):
    # The test writes to a private null device, so a regression cannot replace the host's /dev/null.
    folder = tmp_path / "out"
    folder.mkdir()
    device = folder / "null"
    os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))

    result = cli("save", "-o", device, "busybox")

    assert result.returncode == 0, result.stderr
    assert stat.S_ISCHR(os.stat(device).st_mode)
    assert os.listdir(folder) == ["null"]


def test_cli_save_into_named_pipe(cli, busybox, tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    copy = tmp_path / "copy.tar"
    # The reader copies into a file, so a full pipe never stalls the writer.
    with open(copy, "wb") as sink:
        reader = subprocess.Popen(["cat", str(pipe)], stdout=sink)
        result = cli("save", "-o", pipe, "busybox", timeout=120)
        reader.wait(timeout=60)

    assert result.returncode == 0, result.stderr
    assert stat.S_ISFIFO(os.stat(pipe).st_mode)
    with tarfile.open(copy) as opened:
        assert "manifest.json" in opened.getnames()


def test_cli_save_through_symlink_keeps_link(cli, busybox, tmp_path):
    archive = tmp_path / "real.tar"
    archive.write_bytes(b"old")
    link = tmp_path / "link.tar"
    link.symlink_to(archive)

    result = cli("save", "-o", link, "busybox")

    assert result.returncode == 0, result.stderr
    assert link.is_symlink()
    assert tarfile.is_tarfile(archive)


def test_fsck_reports_then_removes_tmp_files(cli, engine, store_root):
    tmp_dir = store_root / "tmp"
    (tmp_dir / "blob-1-killed").write_bytes(b"\0" * 1000)
    (tmp_dir / "load-killed").write_bytes(b"\0" * 1000)

    check = cli("fsck")
    repair = cli("fsck", "--repair")
    again = cli("fsck")

    assert check.returncode != 0
    assert (f"2 temporary files from interrupted writes in {tmp_dir}: run `layerlab fsck --repair` to remove them"
            in check.stdout)
    assert repair.returncode == 0, repair.stderr
    assert f"removed 2 temporary files from interrupted writes in {tmp_dir}" in repair.stdout
    assert again.stdout == "store is consistent\n"
