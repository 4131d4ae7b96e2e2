"""Base images made locally, with no registry: `busybox` and `debian:<suite>`.

The root file system comes from `rootfs_builders` as one tar. It becomes a
one-layer image whose history and labels record how it was made, as
`docker import` of the same tar would, plus the official images' CMD.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable

from layerlab.engine import rootfs_builders
from layerlab.engine.errors import InvalidArgumentError
from layerlab.engine.image import DEFAULT_PATH, ImageDraft, write_image
from layerlab.engine.reference import Reference

log = logging.getLogger(__name__)

COPY_BUFFER = 1 << 20


def bootstrap(engine, name: str, *, mirror: str = "http://deb.debian.org/debian",
              progress: Callable[[str], None] | None = None) -> tuple[str, str]:
    """Make the base image `name` and tag it; return its image ID and familiar name."""
    reference = Reference.parse(name)
    repository = reference.familiar_name
    say = progress or (lambda text: None)

    with engine.store.gc_shared(), tempfile.TemporaryDirectory(prefix="bootstrap-", dir=engine.store.tmp_dir) as scratch:
        tar_path = os.path.join(scratch, "rootfs.tar")
        if repository == "busybox":
            say("Building busybox from Debian's busybox-static package\n")
            built = rootfs_builders.build_busybox_rootfs(tar_path)
        elif repository == "debian":
            suite = reference.tag or "bookworm"
            if suite == "latest":
                suite = "bookworm"
            say(f"Building debian:{suite} with mmdebstrap (this takes a minute or two)\n")
            built = rootfs_builders.build_debian_rootfs(suite, tar_path, mirror=mirror)
        else:
            raise InvalidArgumentError(
                f"cannot bootstrap {name!r}: only busybox and debian:SUITE (such as debian:bookworm) can be made locally"
            )
        image = _import_rootfs(engine, tar_path, built)
        engine.images.tag(image, reference)
    log.info("bootstrapped %s as %s", reference, image.id)
    return image.id, reference.familiar


def _import_rootfs(engine, tar_path: str, built: dict):
    with engine.store.blob_writer() as writer, open(tar_path, "rb") as source:
        while chunk := source.read(COPY_BUFFER):
            writer.write(chunk)
        digest = writer.commit()
        size = writer.size

    draft = ImageDraft.empty()
    draft.add_layer(digest, size)
    draft.add_history(f"/bin/sh -c #(nop) ADD file:{digest.split(':', 1)[1]} in / ", empty_layer=False,
                      comment=f"layerlab bootstrap: {built['labels'].get('dev.layerlab.bootstrap', '')}")
    cmd = list(built.get("cmd") or ["sh"])
    draft.settings["Env"] = [f"PATH={DEFAULT_PATH}"]
    draft.settings["Cmd"] = cmd
    draft.settings["Labels"] = dict(built.get("labels") or {})
    draft.add_history(f"/bin/sh -c #(nop)  CMD {json.dumps(cmd)}", empty_layer=True)
    return write_image(engine.store, draft)
