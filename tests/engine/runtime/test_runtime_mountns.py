"""run_in_rootfs: a function called on a mounted overlay in a private mount namespace."""

import errno
import os

import pytest

from layerlab.engine.errors import ContainerError, DockerfileError
from layerlab.engine.runtime import RootfsSpec, overlay, run_in_rootfs, syscalls


def write_marker(merged):
    with open(os.path.join(merged, "copied.txt"), "w") as file:
        file.write("copied")


def test_write_lands_in_upper(rootfs, busybox_lower):
    run_in_rootfs(rootfs, write_marker)
    with open(os.path.join(rootfs.upperdir, "copied.txt")) as file:
        assert file.read() == "copied"
    assert not os.path.exists(os.path.join(busybox_lower, "copied.txt"))


def test_function_sees_lower_files(rootfs, tmp_path):
    seen = tmp_path / "seen"

    def list_etc(merged):
        seen.write_text(" ".join(sorted(os.listdir(os.path.join(merged, "etc")))))

    run_in_rootfs(rootfs, list_etc)
    assert seen.read_text() == "group motd passwd"


def test_mount_invisible_to_caller(rootfs, tmp_path):
    merged_path = tmp_path / "merged-path"

    def record(merged):
        merged_path.write_text(merged)

    run_in_rootfs(rootfs, record)
    assert not os.path.exists(os.path.join(merged_path.read_text(), "etc/passwd"))


def test_exception_becomes_container_error(rootfs):
    def fail(merged):
        raise ValueError("disk full")

    with pytest.raises(ContainerError, match="ValueError: disk full"):
        run_in_rootfs(rootfs, fail)


def test_layerlab_error_keeps_type(rootfs):
    def fail(merged):
        raise DockerfileError("source not found", line=3, instruction="COPY")

    with pytest.raises(DockerfileError) as raised:
        run_in_rootfs(rootfs, fail)
    assert raised.value.line == 3
    assert str(raised.value) == "Dockerfile:3: COPY: source not found"


def test_empty_lowerdirs(tmp_path):
    upper = tmp_path / "upper"
    upper.mkdir()
    (tmp_path / "work").mkdir()
    run_in_rootfs(RootfsSpec([], str(upper), str(tmp_path / "work")), write_marker)
    assert (upper / "copied.txt").read_text() == "copied"


def test_missing_upper_is_error(tmp_path, busybox_lower):
    rootfs = RootfsSpec([busybox_lower], str(tmp_path / "nope"), str(tmp_path / "work"))
    with pytest.raises(ContainerError, match="upperdir"):
        run_in_rootfs(rootfs, write_marker)


def _reject_as_too_old(*args, **kwargs):
    raise overlay._KeyUnsupported()


@pytest.mark.parametrize("rejected", [["_configure_by_fd"], ["_configure_by_fd", "_configure_by_path"]])
def test_older_kernel_fallbacks(rootfs, monkeypatch, rejected):
    # The child inherits the patched module, as if the kernel lacked these fsconfig forms.
    for name in rejected:
        monkeypatch.setattr(overlay, name, _reject_as_too_old)
    run_in_rootfs(rootfs, write_marker)
    assert os.path.exists(os.path.join(rootfs.upperdir, "copied.txt"))


def test_mount_fallback_rejects_long_options(tmp_path, monkeypatch, busybox_lower):
    monkeypatch.setattr(overlay, "_configure_by_fd", _reject_as_too_old)
    monkeypatch.setattr(overlay, "_configure_by_path", _reject_as_too_old)
    layers = []
    for index in range(40):
        layer = tmp_path / ("d" * 120) / f"{index:02d}"
        layer.mkdir(parents=True)
        layers.append(str(layer))
    (tmp_path / "u").mkdir()
    (tmp_path / "w").mkdir()

    with pytest.raises(ContainerError, match="more than mount\\(2\\) accepts"):
        run_in_rootfs(RootfsSpec(layers + [busybox_lower], str(tmp_path / "u"), str(tmp_path / "w")), write_marker)
