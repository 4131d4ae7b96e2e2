"""Images: an OCI image config, its manifest and its layers.

An image's ID is the digest of its config, as Docker's is. The config uses
Docker's field names (`Env`, `Cmd`, `Entrypoint`, ...), which the OCI image
spec shares; Docker-only fields (`Shell`, `Healthcheck`, `OnBuild`) are kept
in the same object, as Docker does.
"""

from __future__ import annotations

import copy
import datetime
import os
import re
from dataclasses import dataclass, field

from layerlab.engine.digest import chain_ids
from layerlab.engine.store import (
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_LAYER,
    MEDIA_TYPE_MANIFEST,
    Descriptor,
    Store,
)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def host_architecture() -> str:
    machine = os.uname().machine
    return _ARCHITECTURES.get(machine, machine)


def now_rfc3339() -> str:
    """Return the creation time for new history entries, honouring SOURCE_DATE_EPOCH."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        moment = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
    else:
        moment = datetime.datetime.now(datetime.timezone.utc)
    return moment.isoformat().replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime.datetime:
    # Go writes nanoseconds, and Python's parser takes at most microseconds.
    match = re.fullmatch(r"(.*?T[\d:]+)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?", text)
    if match is None:
        return datetime.datetime.fromisoformat(text)
    head, fraction, zone = match.groups()
    fraction = f".{fraction[:6]}" if fraction else ""
    zone = "+00:00" if zone in (None, "Z") else zone
    return datetime.datetime.fromisoformat(head + fraction + zone)


@dataclass
class Image:
    """An image in the store: its config document and its layer descriptors."""

    id: str
    config: dict
    layers: list[Descriptor]
    manifest_digest: str | None = None
    manifest_size: int = 0

    @property
    def settings(self) -> dict:
        """The `config` object inside the image config (Env, Cmd, ...)."""
        return self.config.setdefault("config", {})

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.get("rootfs", {}).get("diff_ids", []))

    @property
    def chain_ids(self) -> list[str]:
        return chain_ids(self.diff_ids)

    @property
    def history(self) -> list[dict]:
        return list(self.config.get("history", []))

    @property
    def created(self) -> str:
        return self.config.get("created", "")

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)

    def manifest_descriptor(self, annotations: dict[str, str] | None = None) -> Descriptor:
        return Descriptor(MEDIA_TYPE_MANIFEST, self.manifest_digest, self.manifest_size, dict(annotations or {}))


@dataclass
class ImageDraft:
    """A mutable copy of an image's config and layers, written as a new image by `write_image`."""

    config: dict
    layers: list[Descriptor] = field(default_factory=list)

    @classmethod
    def empty(cls) -> ImageDraft:
        config = {
            "architecture": host_architecture(),
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        }
        return cls(config)

    @classmethod
    def from_image(cls, image: Image) -> ImageDraft:
        return cls(copy.deepcopy(image.config), list(image.layers))

    @property
    def settings(self) -> dict:
        return self.config.setdefault("config", {})

    def add_history(self, created_by: str, *, empty_layer: bool, comment: str = "", author: str = "") -> None:
        entry = {"created": now_rfc3339(), "created_by": created_by}
        if comment:
            entry["comment"] = comment
        if author:
            entry["author"] = author
        if empty_layer:
            entry["empty_layer"] = True
        self.config.setdefault("history", []).append(entry)
        self.config["created"] = entry["created"]

    def add_layer(self, digest: str, size: int) -> None:
        """Append an uncompressed layer, whose digest is therefore also its diff ID."""
        self.layers.append(Descriptor(MEDIA_TYPE_LAYER, digest, size))
        self.config.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"].append(digest)


def write_image(store: Store, draft: ImageDraft) -> Image:
    """Store the draft's config and manifest blobs; return the new image."""
    config = copy.deepcopy(draft.config)
    config.setdefault("created", now_rfc3339())
    config_digest, config_size = store.put_json(config)

    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [layer.to_json() for layer in draft.layers],
    }
    manifest_digest, manifest_size = store.put_json(manifest)
    return Image(config_digest, config, list(draft.layers), manifest_digest, manifest_size)


def load_image(store: Store, manifest_digest: str) -> Image:
    manifest = store.read_json(manifest_digest)
    config_digest = manifest["config"]["digest"]
    config = store.read_json(config_digest)
    layers = [Descriptor.from_json(layer) for layer in manifest.get("layers", [])]
    size = os.path.getsize(store.blob_path(manifest_digest))
    return Image(config_digest, config, layers, manifest_digest, size)
