"""buildah 1.28 as a third build oracle, with private storage under a temporary folder.

It uses the vfs storage driver and chroot isolation, so it needs no fuse,
no overlay mount and no container runtime, and a registries.conf whose
short names resolve to docker.io only to find images already in the private
storage: every command passes --pull-never, so nothing is fetched.
"""

import gzip
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from layerlab.engine.unpack import apply_layer
from tests.build_oracle.tree import describe_tree

BUILDAH = "/usr/bin/buildah"
REGISTRIES_CONF = 'unqualified-search-registries = ["docker.io"]\nshort-name-mode = "disabled"\n'


class PrivateBuildah:
    """buildah with its own --root and --runroot; `close()` removes both."""

    def __init__(self, binary=BUILDAH):
        self.binary = binary
        self.base = tempfile.mkdtemp(prefix="layerlab-buildah-", dir="/var/tmp")
        conf = os.path.join(self.base, "registries.conf")
        with open(conf, "w", encoding="utf-8") as handle:
            handle.write(REGISTRIES_CONF)
        self.env = dict(os.environ, CONTAINERS_REGISTRIES_CONF=conf)

    def buildah(self, *args, check=True, cwd=None, timeout=600):
        command = [self.binary, "--storage-driver", "vfs", "--root", os.path.join(self.base, "root"),
                   "--runroot", os.path.join(self.base, "run"), *map(str, args)]
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout,
                                check=False, cwd=cwd)
        if check and result.returncode != 0:
            raise AssertionError(f"buildah {' '.join(map(str, args))} failed with exit status "
                                 f"{result.returncode}:\n{result.stderr}")
        return result

    def import_rootfs(self, tar_path, ref, cmd=("sh",)):
        """Commit the rootfs tar as `ref` with `cmd` as its Cmd, as `docker import --change` does."""
        container = self.buildah("from", "scratch").stdout.strip()
        try:
            self.buildah("add", container, tar_path, "/")
            self.buildah("config", "--cmd", json.dumps(list(cmd)), container)
            self.buildah("commit", "-q", "--format", "docker", container, ref)
        finally:
            self.buildah("rm", container)

    def build(self, context, tag, build_args=None, target=None, check=True):
        """Run `buildah bud` with a layer per instruction and Docker's image format."""
        args = ["bud", "--pull-never", "--isolation", "chroot", "--layers", "--format", "docker", "-t", tag]
        for key, value in (build_args or {}).items():
            args += ["--build-arg", f"{key}={value}"]
        if target:
            args += ["--target", target]
        return self.buildah(*args, str(context), check=check)

    def inspect(self, tag):
        """Return the image's Docker-format config: `config`, `history` and `rootfs`."""
        return json.loads(self.buildah("inspect", "--type", "image", tag).stdout)["Docker"]

    def tree(self, tag, scratch):
        """Describe the image's files by applying its layers from an uncompressed OCI layout.

        A working container (`buildah from`) would run the image's ONBUILD
        triggers and add a /run mount point, so the image is pushed instead.
        """
        layout = tempfile.mkdtemp(dir=scratch)
        self.buildah("push", "--disable-compression", "--format", "oci", tag, f"oci:{layout}")
        root = tempfile.mkdtemp(dir=scratch)
        with open(os.path.join(layout, "index.json"), encoding="utf-8") as handle:
            manifest_digest = json.load(handle)["manifests"][0]["digest"]
        with open(_blob(layout, manifest_digest), encoding="utf-8") as handle:
            manifest = json.load(handle)
        for layer in manifest["layers"]:
            # buildah reuses the gzip blobs it already has, --disable-compression or not.
            opener = gzip.open if layer["mediaType"].endswith("gzip") else open
            with opener(_blob(layout, layer["digest"]), "rb") as blob:
                apply_layer(blob, root)
        tree = describe_tree(root)
        # buildah 1.28 leaves the /run mount point of every RUN container in the layer when the base lacks it.
        if "run" in tree and not any(path.startswith("run/") for path in tree):
            del tree["run"]
        return tree

    def close(self):
        self.buildah("rm", "--all", check=False)
        shutil.rmtree(self.base, ignore_errors=True)


def _blob(layout, digest):
    algorithm, _, value = digest.partition(":")
    return os.path.join(layout, "blobs", algorithm, value)


@pytest.fixture(scope="session")
def oracle_buildah(busybox_rootfs_tar):
    """A private buildah with the same busybox rootfs as docker.io/library/busybox:latest."""
    if not os.access(BUILDAH, os.X_OK):
        pytest.skip(f"{BUILDAH} is not installed; install it with: apt-get install -y buildah")
    buildah = PrivateBuildah()
    buildah.import_rootfs(busybox_rootfs_tar, "docker.io/library/busybox:latest")
    yield buildah
    buildah.close()
