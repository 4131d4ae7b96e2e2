"""Manifests as registries serve them: media types, size limit, platform selection."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from dataclasses import dataclass

from layerlab.engine.errors import InvalidArgumentError, NotFoundError
from layerlab.engine.image import host_architecture
from layerlab.engine.reference import Reference
from layerlab.engine.registry.client import RegistryClient, RegistryError
from layerlab.engine.transfer.layers import BlobMismatchError

log = logging.getLogger(__name__)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
INDEX_TYPES = {DOCKER_MANIFEST_LIST, OCI_INDEX}
IMAGE_TYPES = {DOCKER_MANIFEST, OCI_MANIFEST}
ACCEPT = ", ".join([OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST])

# containerd and distribution both cap manifests at 4 MiB; a larger one is hostile or broken.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse `os/arch[/variant]`, as `--platform` takes it (`linux/amd64`, `linux/arm/v7`)."""
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidArgumentError(f"invalid platform {text!r}: expected os/arch or os/arch/variant, e.g. linux/amd64")
        return cls(*parts)

    @classmethod
    def host(cls) -> Platform:
        variant = "v8" if host_architecture() == "arm64" else ""
        if platform.machine() == "armv7l":
            variant = "v7"
        return cls("linux", host_architecture(), variant)

    def matches(self, candidate: dict) -> bool:
        if candidate.get("os") != self.os or candidate.get("architecture") != self.architecture:
            return False
        # An entry without a variant fits any requested variant (arm64 images rarely name v8).
        return not self.variant or not candidate.get("variant") or candidate.get("variant") == self.variant

    def __str__(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)


@dataclass
class FetchedManifest:
    media_type: str
    digest: str
    data: bytes
    document: dict


def fetch_manifest(client: RegistryClient, repository: str, reference: str) -> FetchedManifest:
    """GET a manifest by tag or digest, checking its size and, where known, its digest."""
    response = client.request("GET", f"/v2/{repository}/manifests/{reference}", headers={"Accept": ACCEPT},
                              allow_missing=True)
    if response is None:
        separator = "@" if ":" in reference else ":"
        name = Reference(client.registry, repository).familiar_name
        raise NotFoundError(f"manifest for {name}{separator}{reference} not found: manifest unknown")
    length = response.getheader("Content-Length")
    if length is not None and int(length) > MAX_MANIFEST_SIZE:
        response.close()
        raise RegistryError(
            f"manifest {repository}:{reference} is {length} bytes, over the {MAX_MANIFEST_SIZE}-byte limit"
        )
    data = response.read(MAX_MANIFEST_SIZE + 1)
    if len(data) > MAX_MANIFEST_SIZE:
        response.close()
        raise RegistryError(f"manifest {repository}:{reference} is over the {MAX_MANIFEST_SIZE}-byte limit")

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    expected = reference if reference.startswith("sha256:") else response.getheader("Docker-Content-Digest")
    if expected and expected.startswith("sha256:") and expected != digest:
        raise BlobMismatchError(f"manifest {repository}@{expected} has digest {digest}: the registry sent other content")

    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError) as error:
        raise RegistryError(f"manifest {repository}:{reference} is not valid JSON: {error}") from None
    media_type = document.get("mediaType") or response.getheader("Content-Type", "").split(";")[0]
    if media_type == DOCKER_SCHEMA1 or document.get("schemaVersion") == 1:
        raise RegistryError(
            f"{repository}:{reference} is a Docker schema 1 image, which layerlab does not pull: push it again "
            "with a current Docker or skopeo"
        )
    if media_type not in INDEX_TYPES | IMAGE_TYPES:
        # An OCI manifest may omit mediaType, so its keys decide which kind it is.
        media_type = OCI_INDEX if "manifests" in document else OCI_MANIFEST
    return FetchedManifest(media_type, digest, data, document)


def select_platform(index: dict, requested: Platform, name: str) -> dict:
    """Return the descriptor in a manifest list or OCI index that fits `requested`."""
    entries = [entry for entry in index.get("manifests", []) if entry.get("mediaType", OCI_MANIFEST) in IMAGE_TYPES]
    for entry in entries:
        if requested.matches(entry.get("platform") or {}):
            return entry
    available = sorted({str(Platform(p.get("os", "?"), p.get("architecture", "?"), p.get("variant", "")))
                        for p in (entry.get("platform") or {} for entry in entries)})
    raise NotFoundError(
        f"{name} has no image for platform {requested}: it has {', '.join(available) or 'none'}; "
        "choose one with --platform"
    )
