"""The private Docker Engine harness works end to end."""


def test_dockerd_runs_imported_busybox(dockerd, busybox_rootfs_tar):
    image_id = dockerd.import_rootfs(busybox_rootfs_tar, "layerlab-test/busybox:latest")

    assert image_id.startswith("sha256:")

    result = dockerd.docker("run", "--rm", "--network", "none", "layerlab-test/busybox:latest", "echo", "hi")

    assert result.returncode == 0
    assert result.stdout == "hi\n"


def test_dockerd_keeps_imported_cmd(dockerd, busybox_rootfs_tar):
    dockerd.import_rootfs(busybox_rootfs_tar, "layerlab-test/busybox:cmd")

    result = dockerd.docker("image", "inspect", "--format", "{{json .Config.Cmd}}", "layerlab-test/busybox:cmd")

    assert result.stdout.strip() == '["sh"]'
