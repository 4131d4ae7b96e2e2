"""Push an image from the store to a registry.

An image pulled from a registry and not changed since keeps the manifest
that the registry served (see `pull`). When the target registry already
has every layer blob that manifest names, in the target repository or
in one it can mount from, those bytes are pushed unchanged, with their own
media type (Docker schema 2 or OCI), so the manifest digest stays the
same. podman and skopeo keep a manifest the same way when nothing needs
converting, and Docker 20.10 gets the same digest for a pulled schema 2
image whose layer blobs it reuses (docs/compatibility.md compares them).
Otherwise the push writes an OCI manifest of its own, as described next.

Layers are gzip-compressed on the way out, because the store keeps them
uncompressed and registries and Docker expect compressed layers. Before
compressing, a push sends `HEAD` for every compressed digest recorded for
that layer and tries a cross-repository mount from a sibling repository on
the same registry. Only a layer that the registry lacks is compressed and
uploaded. Uploads are monolithic (one `PUT`) up to `chunk_size` and
chunked (`PATCH` per chunk, then `PUT`) above it. A failed chunk is resumed
from the offset that the registry reports. The config
is pushed byte for byte, so the registry's image ID is the store's.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from layerlab.engine.digest import sha256_digest, short_id
from layerlab.engine.errors import InvalidArgumentError, NotFoundError
from layerlab.engine.kept_manifests import valid_kept_entries
from layerlab.engine.reference import Reference
from layerlab.engine.registry.blobinfo import BlobInfo, CompressedBlob
from layerlab.engine.registry.client import RegistryClient, RegistryError
from layerlab.engine.registry.manifests import IMAGE_TYPES, OCI_MANIFEST
from layerlab.engine.registry.progress import (
    ByteProgress,
    CountingReader,
    LayerProgress,
    TransferDone,
    TransferEvent,
    TransferStarted,
    event_sink,
)

log = logging.getLogger(__name__)

OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
# The layer media type for an OCI manifest, by the media type a recorded blob arrived with.
# A Docker schema 2 layer is the same bytes under another name, but an OCI
# manifest must use the OCI name: podman 4.3 rejects a Docker name in one
# when it pushes the image on ("unsupported MIME type for compression").
OCI_LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar": "application/vnd.oci.image.layer.v1.tar",
    OCI_LAYER_GZIP: OCI_LAYER_GZIP,
    "application/vnd.oci.image.layer.v1.tar+zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar": "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": OCI_LAYER_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar.zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
DEFAULT_CHUNK_SIZE = 16 << 20
# gzip's default level (6), as Docker uses.
# TODO: gzip runs at about 24 MB/s and bounds a push; offer zstd or isal when their modules are installed.
GZIP_LEVEL = 6
CHUNK_RETRIES = 3
COPY_BUFFER = 1 << 20


@dataclass
class PushResult:
    reference: Reference
    manifest_digest: str
    manifest_size: int


def push(engine, name: str, *, progress: Callable[[str], None] | None = None,
         chunk_size: int = DEFAULT_CHUNK_SIZE, client: RegistryClient | None = None,
         events: Callable[[TransferEvent], None] | None = None) -> PushResult:
    """Push the image tagged `name` to the registry its reference names; return the manifest digest.

    `events` receives the typed progress events; `progress` receives their
    text as Docker prints it without a TTY.
    """
    reference = Reference.parse(name)
    if reference.digest:
        raise InvalidArgumentError(f"cannot push {name!r} by digest: push a tag such as {reference.name}:latest")
    if chunk_size <= 0:
        raise InvalidArgumentError(f"chunk size {chunk_size} must be a positive number of bytes")
    client = client or RegistryClient(reference.registry, root=engine.root)
    client.add_scope(reference.repository, "pull,push")
    say = event_sink(progress, events)
    try:
        # Prune must not delete the image's config, layers or kept manifests while they are read and sent,
        # so the push holds the gc lock shared from resolving the name to recording the pushed digest.
        with engine.store.gc_shared():
            image = engine.images.resolve(name)
            uploader = _Uploader(engine, client, reference, chunk_size, say)
            return uploader.push_image(image)
    finally:
        client.close()


class _Uploader:
    def __init__(self, engine, client: RegistryClient, reference: Reference, chunk_size: int, say):
        self.engine = engine
        self.client = client
        self.reference = reference
        self.repository = reference.repository
        self.chunk_size = chunk_size
        self.say = say
        self.blob_info = BlobInfo(engine.store)

    def push_image(self, image) -> PushResult:
        self.say(TransferStarted(f"The push refers to repository [{self.reference.name}]"))
        kept_manifest = self._reusable_manifest(image)
        if kept_manifest is None:
            layers = []
            # Docker prints the top layer first; the order of uploads does not matter to the registry.
            for layer in image.layers:
                layers.append(self._push_layer(layer.digest))
        else:
            for short, status in kept_manifest.layer_statuses:
                self.say(LayerProgress(short, "Preparing"))
                self.say(LayerProgress(short, status))

        config_bytes = self.engine.store.read_blob(image.id)
        if not self._exists(image.id):
            with open(self.engine.store.blob_path(image.id), "rb") as config:
                self._upload(self._start_upload(), config, image.id, len(config_bytes))

        if kept_manifest is None:
            manifest = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": image.id, "size": len(config_bytes)},
                "layers": layers,
            }
            data, media_type = json.dumps(manifest, indent=3).encode(), OCI_MANIFEST
        else:
            data, media_type = kept_manifest.data, kept_manifest.media_type
        digest = self._put_manifest(data, media_type)
        self.say(TransferDone((f"{self.reference.tag}: digest: {digest} size: {len(data)}",)))
        log.info("pushed %s as %s (%s)", self.reference, digest,
                 "kept manifest" if kept_manifest is not None else "new manifest")
        self.engine.images.add_repo_digest(image.id, self.reference, digest)
        if kept_manifest is not None:
            # The target repository becomes one more source that later pushes can mount from.
            self.engine.images.keep_registry_manifest(image.id, self.reference, digest)
        return PushResult(self.reference, digest, len(data))

    def _put_manifest(self, data: bytes, media_type: str) -> str:
        """PUT the manifest under the reference's tag and return its digest, checked against the registry's."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        response = self.client.request(
            "PUT", f"/v2/{self.repository}/manifests/{self.reference.tag}",
            headers={"Content-Type": media_type, "Content-Length": str(len(data))}, body=data, expect=(201, 200),
        )
        response.read()
        answered = response.getheader("Docker-Content-Digest")
        if answered and answered != digest:
            raise RegistryError(f"{self.reference.registry} stored the manifest as {answered}, not {digest}")
        return digest

    # Kept registry manifests

    def _reusable_manifest(self, image) -> _KeptManifest | None:
        """Return a kept registry manifest of `image` whose layer blobs the target repository now has, or None.

        Candidates from the target registry come first. For each layer the
        target repository is asked (`HEAD`), then the registry is asked to
        mount the blob from the kept manifest's repository and from the
        repositories that `registry-blobs.json` records for it. A manifest
        with a layer that is neither there nor mountable is skipped, and
        its mounts that did succeed stay in the target repository, where
        they are harmless.
        """
        registry = self.reference.registry
        # Malformed entries are skipped with a warning, and fsck reports them.
        kept = sorted(((entry.reference, entry.digest) for entry in valid_kept_entries(self.engine.store, image.id)),
                      key=lambda entry: (entry[0].registry != registry, entry[0].repository != self.repository))
        # The same bytes kept under several names (a source and its pushed copies) are tried once, with every
        # repository of the target registry that names them as a mount source.
        names_by_digest: dict[str, list[Reference]] = {}
        for source, digest in kept:
            names_by_digest.setdefault(digest, []).append(source)
        for digest, names in names_by_digest.items():
            candidate = self._load_kept_manifest(image, names[0], digest)
            if candidate is None:
                continue
            sources = [name.repository for name in names if name.registry == registry]
            statuses = self._gather_kept_layers(image, candidate, sources)
            if statuses is None:
                log.info("cannot reuse the manifest %s from %s on %s: a layer blob is missing there",
                         digest, names[0].name, self.reference.name)
                continue
            candidate.layer_statuses = statuses
            return candidate
        return None

    def _load_kept_manifest(self, image, source: Reference, digest: str) -> _KeptManifest | None:
        try:
            data = self.engine.store.read_blob(digest)
        except NotFoundError as error:
            log.warning("ignoring the manifest kept from %s (%s): %s. Run `layerlab fsck`", source.name, digest, error)
            return None

        # The registry names a manifest by the sha256 of its bytes, so changed bytes must never go out under this name.
        actual = sha256_digest(data)
        if actual != digest:
            log.warning("ignoring the manifest kept from %s (%s): its blob has digest %s (%d bytes). "
                        "Run `layerlab fsck --repair`", source.name, digest, actual, len(data))
            return None

        try:
            document = json.loads(data)
        except (UnicodeDecodeError, ValueError) as error:
            log.warning("ignoring the manifest kept from %s (%s): %s. Run `layerlab fsck`", source.name, digest, error)
            return None
        if not isinstance(document, dict):
            log.warning("ignoring the manifest kept from %s (%s): it is not a JSON object", source.name, digest)
            return None

        # An OCI manifest may omit mediaType, but a Docker schema 2 manifest always has it.
        media_type = document.get("mediaType") or OCI_MANIFEST
        layers = document.get("layers")
        config = document.get("config")
        if (media_type not in IMAGE_TYPES or not isinstance(layers, list) or not isinstance(config, dict)
                or config.get("digest") != image.id or len(layers) != len(image.layers)):
            log.debug("the manifest kept from %s (%s) does not describe image %s", source.name, digest, image.id)
            return None

        if any(not isinstance(layer, dict) or layer.get("mediaType") not in OCI_LAYER_TYPES
               or not str(layer.get("digest", "")).startswith("sha256:") or not isinstance(layer.get("size"), int)
               for layer in layers):
            log.debug("the manifest kept from %s (%s) has a layer type that push does not send", source.name, digest)
            return None
        return _KeptManifest(digest, data, media_type, layers)

    def _gather_kept_layers(self, image, kept: _KeptManifest, sources: list[str]) -> list[tuple[str, str]] | None:
        """Find or mount each layer blob of `kept` in the target repository.

        Return the progress lines, or None when a blob is out of reach.
        """
        statuses = []
        for layer, descriptor in zip(image.layers, kept.layers):
            diff_id = layer.digest
            blob = CompressedBlob(descriptor["digest"], descriptor["size"], descriptor["mediaType"],
                                  self.reference.registry, self.repository)
            if self._exists(blob.digest):
                statuses.append((short_id(diff_id), "Layer already exists"))
                self._remember(diff_id, blob)
                continue
            recorded = [known.repository for known in self.blob_info.known(diff_id, self.reference.registry)
                        if known.digest == blob.digest]
            mounted_from = None
            for repository in dict.fromkeys(sources + recorded):
                if repository == self.repository:
                    continue
                mounted, upload_url = self._try_mount(
                    CompressedBlob(blob.digest, blob.size, blob.media_type, self.reference.registry, repository))
                if upload_url is not None:
                    self._cancel_upload(upload_url)
                if mounted:
                    mounted_from = repository
                    break
            if mounted_from is None:
                return None
            statuses.append((short_id(diff_id), f"Mounted from {mounted_from}"))
            self._remember(diff_id, blob)
        return statuses

    # Layers

    def _push_layer(self, diff_id: str) -> dict:
        short = short_id(diff_id)
        self.say(LayerProgress(short, "Preparing"))
        registry = self.reference.registry
        # A blob of another media type (foreign, or one this table lacks) is compressed and pushed anew.
        known = [blob for blob in self.blob_info.known(diff_id, registry) if blob.media_type in OCI_LAYER_TYPES]

        for blob in known:
            if blob.repository == self.repository and self._exists(blob.digest):
                self.say(LayerProgress(short, "Layer already exists"))
                return _descriptor(blob)
        upload_url = None
        for blob in known:
            if blob.repository == self.repository:
                continue
            mounted, upload_url = self._try_mount(blob)
            if mounted:
                self.say(LayerProgress(short, f"Mounted from {blob.repository}"))
                self._remember(diff_id, blob)
                return _descriptor(blob)

        with tempfile.TemporaryFile(dir=self.engine.store.tmp_dir) as compressed:
            digest, size = _gzip_blob(self.engine.store, diff_id, compressed)
            blob = CompressedBlob(digest, size, OCI_LAYER_GZIP, registry, self.repository)
            if self._exists(digest):
                self.say(LayerProgress(short, "Layer already exists"))
            else:
                self.say(LayerProgress(short, "Pushing"))
                progress = ByteProgress(self.say, short, "Pushing", size)
                self._upload(upload_url or self._start_upload(), compressed, digest, size, progress)
                self.say(LayerProgress(short, "Pushed"))
        self._remember(diff_id, blob)
        return _descriptor(blob)

    def _remember(self, diff_id: str, blob: CompressedBlob) -> None:
        mine = CompressedBlob(blob.digest, blob.size, blob.media_type, self.reference.registry, self.repository)
        self.blob_info.remember(diff_id, mine)

    def _exists(self, digest: str) -> bool:
        response = self.client.request("HEAD", f"/v2/{self.repository}/blobs/{digest}", allow_missing=True)
        if response is None:
            return False
        response.read()
        return True

    def _try_mount(self, blob: CompressedBlob) -> tuple[bool, str | None]:
        """Ask the registry to mount `blob` from its repository; return (mounted, upload URL if it began one)."""
        self.client.add_scope(blob.repository, "pull")
        query = urllib.parse.urlencode({"mount": blob.digest, "from": blob.repository})
        try:
            response = self.client.request("POST", f"/v2/{self.repository}/blobs/uploads/?{query}",
                                           headers={"Content-Length": "0"}, body=b"", expect=(201, 202))
        except RegistryError as error:
            log.debug("mount of %s from %s failed: %s", blob.digest, blob.repository, error)
            return False, None
        response.read()
        if response.status == 201:
            return True, None
        # 202: the registry could not mount and opened an ordinary upload instead.
        return False, self._location(response)

    # Uploads

    def _cancel_upload(self, url: str) -> None:
        """Cancel an upload that a failed mount opened. A registry that rejects the cancel keeps it until its own purge."""
        try:
            self.client.request("DELETE", url, expect=(204,)).read()
        except RegistryError as error:
            log.debug("cancelling the upload %s failed: %s", url, error)

    def _start_upload(self) -> str:
        response = self.client.request("POST", f"/v2/{self.repository}/blobs/uploads/",
                                       headers={"Content-Length": "0"}, body=b"", expect=(202,))
        response.read()
        return self._location(response)

    def _location(self, response) -> str:
        location = response.getheader("Location")
        if not location:
            raise RegistryError(f"{self.reference.registry} started an upload but sent no Location header")
        return urllib.parse.urljoin(self.client.base_url + "/", location)

    def _upload(self, url: str, source, digest: str, size: int, progress: ByteProgress | None = None) -> None:
        source.seek(0)
        if size > self.chunk_size:
            url = self._upload_chunks(url, source, size, progress)
            body, length = b"", 0
        elif progress is not None:
            body, length = CountingReader(source, progress), size
        else:
            body, length = source, size
        response = self.client.request(
            "PUT", _with_query(url, {"digest": digest}),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(length)},
            body=body, expect=(201, 204),
        )
        response.read()

    def _upload_chunks(self, url: str, source, size: int, progress: ByteProgress | None) -> str:
        offset = 0
        failures = 0
        while offset < size:
            source.seek(offset)
            chunk = source.read(self.chunk_size)
            end = offset + len(chunk) - 1
            try:
                response = self.client.request(
                    "PATCH", url, body=chunk, expect=(202,),
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(chunk)),
                             "Content-Range": f"{offset}-{end}"},
                )
                response.read()
                url = self._location(response)
                offset = end + 1
                if progress is not None:
                    progress.update(offset)
            except RegistryError as error:
                failures += 1
                if failures > CHUNK_RETRIES:
                    raise
                log.warning("chunk %d-%d of an upload to %s failed (%s); resuming", offset, end,
                            self.reference.registry, error)
                offset = self._upload_offset(url)
        return url

    def _upload_offset(self, url: str) -> int:
        """Ask the registry how many bytes of an upload it has, for resuming (`Range: 0-N`)."""
        response = self.client.request("GET", url, expect=(204,))
        response.read()
        received = response.getheader("Range", "")
        _, _, last = received.partition("-")
        return int(last) + 1 if last.isdigit() else 0


@dataclass
class _KeptManifest:
    """A registry manifest of the image, as kept at pull time: its digest, bytes, media type and layers."""

    digest: str
    data: bytes
    media_type: str
    layers: list[dict]
    layer_statuses: list[tuple[str, str]] | None = None


def _descriptor(blob: CompressedBlob) -> dict:
    return {"mediaType": OCI_LAYER_TYPES[blob.media_type], "digest": blob.digest, "size": blob.size}


def _gzip_blob(store, diff_id: str, target) -> tuple[str, int]:
    """Write the gzip of a stored layer to `target`; return the compressed digest and size."""
    hashing = _HashingFile(target)
    # mtime=0 and no file name make the output depend on the layer only, so pushes repeat.
    with store.open_blob(diff_id) as layer, gzip.GzipFile(fileobj=hashing, mode="wb", mtime=0,
                                                          compresslevel=GZIP_LEVEL, filename="") as zipped:
        while chunk := layer.read(COPY_BUFFER):
            zipped.write(chunk)
    target.flush()
    return "sha256:" + hashing.hash.hexdigest(), hashing.size


class _HashingFile:
    def __init__(self, target):
        self.target = target
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.target.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self.target.flush()


def _with_query(url: str, params: dict[str, str]) -> str:
    return url + ("&" if "?" in url else "?") + urllib.parse.urlencode(params)


__all__ = ["push", "PushResult", "DEFAULT_CHUNK_SIZE"]
