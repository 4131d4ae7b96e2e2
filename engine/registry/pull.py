"""Pull an image from a registry into the store.

Layers are stored uncompressed, like every layer in the store, so a gzip
or zstd blob is decompressed while it downloads. Its compressed digest and
size are checked against the manifest and its uncompressed digest against
the config's diff ID. Only then is it published (see `transfer.layers`).
The config is stored byte for byte, so the image ID is the registry's and
`docker pull` of the same image shows the same ID. The
manifest that names the image in the store is layerlab's own over the
uncompressed layers. The registry's manifest for the platform (not the
index) is kept beside it as a blob, byte for byte, so that a push of the
unchanged image can send it again and keep its digest (see `push`). Each
layer's compressed digest is remembered in `registry-blobs.json`, so a push
back to the same registry can skip the upload.

Nothing is tagged until every blob is in: a failure leaves at most whole,
verified layers behind (unreferenced until `system prune`), never a
partial one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from layerlab.engine.digest import check_digest, short_id
from layerlab.engine.errors import InvalidArgumentError, NotFoundError
from layerlab.engine.image import Image
from layerlab.engine.reference import DEFAULT_REGISTRY, Reference
from layerlab.engine.store import ANNOTATION_IMAGE_ID
from layerlab.engine.registry.blobinfo import BlobInfo, CompressedBlob
from layerlab.engine.registry.client import RegistryClient, RegistryError, UnreachableError
from layerlab.engine.registry.manifests import (
    INDEX_TYPES,
    MAX_MANIFEST_SIZE,
    Platform,
    fetch_manifest,
    select_platform,
)
from layerlab.engine.registry.progress import (
    ByteProgress,
    LayerProgress,
    TransferDone,
    TransferEvent,
    TransferStarted,
    event_sink,
)
from layerlab.engine.transfer.images import commit_image, parse_config
from layerlab.engine.transfer.layers import BlobMismatchError, check_bytes, store_layer

log = logging.getLogger(__name__)

# Image configs are small; this cap keeps a hostile registry from filling memory.
MAX_CONFIG_SIZE = MAX_MANIFEST_SIZE
NON_DISTRIBUTABLE = "nondistributable"


@dataclass
class PullResult:
    image: Image
    reference: Reference
    manifest_digest: str
    downloaded: bool


def pull(engine, name: str, *, platform: str | None = None,
         progress: Callable[[str], None] | None = None, client: RegistryClient | None = None,
         events: Callable[[TransferEvent], None] | None = None) -> PullResult:
    """Pull `name` (a tag or a digest reference), tag it in the store and return the image.

    `events` receives the typed progress events; `progress` receives their
    text as Docker prints it without a TTY.
    """
    reference = Reference.parse(name)
    say = event_sink(progress, events)
    requested = Platform.parse(platform) if platform else Platform.host()
    explicit_platform = platform is not None
    client = client or RegistryClient(reference.registry, root=engine.root)
    client.add_scope(reference.repository, "pull")
    try:
        # Layers are stored one by one and named together at the end, so prune waits for the pull.
        with engine.store.gc_shared():
            engine.store.remove_stale_tmp()
            return _pull(engine, client, reference, requested, explicit_platform, say)
    except UnreachableError as error:
        hint = _offline_hint(reference)
        if hint is None:
            raise
        raise UnreachableError(f"{error}: {hint}") from None
    finally:
        client.close()


def _offline_hint(reference: Reference) -> str | None:
    """Return how to make a Docker Hub image that `layerlab bootstrap` can make without a registry, else None."""
    if reference.registry != DEFAULT_REGISTRY or reference.digest:
        return None
    if reference.repository not in ("library/busybox", "library/debian"):
        return None
    name = reference.familiar_name if reference.tag == "latest" else reference.familiar
    return f"to make {name} without a registry, run `layerlab bootstrap {name}`"


def _pull(engine, client, reference: Reference, requested: Platform, explicit_platform: bool, say) -> PullResult:
    repository = reference.repository
    say(TransferStarted(f"{reference.digest or reference.tag}: Pulling from {repository}"))
    top = fetch_manifest(client, repository, reference.digest or reference.tag)
    manifest = top
    if top.media_type in INDEX_TYPES:
        entry = select_platform(top.document, requested, reference.familiar)
        manifest = fetch_manifest(client, repository, check_digest(entry["digest"]))
        if manifest.media_type in INDEX_TYPES:
            raise RegistryError(f"{reference.familiar}: an index inside an index is not supported")

    document = manifest.document
    config_descriptor = document.get("config") or {}
    layer_descriptors = document.get("layers") or []
    config_digest = check_digest(config_descriptor.get("digest", ""))
    config_bytes = _fetch_config(client, repository, config_descriptor)
    config = parse_config(config_bytes, f"{reference.familiar}@{config_digest}")
    diff_ids = config["rootfs"]["diff_ids"]
    if top.media_type not in INDEX_TYPES and explicit_platform and not requested.matches(config):
        raise NotFoundError(
            f"{reference.familiar} is for {Platform(config.get('os', '?'), config.get('architecture', '?'))}, "
            f"not the requested platform {requested}"
        )
    if len(diff_ids) != len(layer_descriptors):
        raise RegistryError(
            f"{reference.familiar}: the manifest lists {len(layer_descriptors)} layers but the config "
            f"{len(diff_ids)} diff IDs: the image is broken"
        )

    current = engine.images.find_descriptor(str(reference))
    already = current is not None and current.annotations.get(ANNOTATION_IMAGE_ID) == config_digest
    blob_info = BlobInfo(engine.store)
    layers = []
    for descriptor, diff_id in zip(layer_descriptors, diff_ids):
        layers.append(_pull_layer(engine, client, reference, descriptor, check_digest(diff_id), blob_info, say))

    image = commit_image(engine.store, config_bytes, config_digest, layers)
    kept_manifest = engine.store.put_blob(manifest.data)
    if reference.digest:
        # As in Docker, a pull by digest adds no tag (a tag written beside the digest is ignored):
        # the image keeps its names, or gets an untagged entry, and records the digest.
        engine.images.add_untagged(image)
    else:
        engine.images.tag(image, reference)
    engine.images.add_repo_digest(image.id, reference, top.digest)
    engine.images.keep_registry_manifest(image.id, reference, kept_manifest)
    pulled_name = f"{reference.familiar_name}@{reference.digest}" if reference.digest else reference.familiar
    if already:
        status = f"Status: Image is up to date for {pulled_name}"
    else:
        status = f"Status: Downloaded newer image for {pulled_name}"
    say(TransferDone((f"Digest: {top.digest}", status, str(reference))))
    log.info("pulled %s (%s) as image %s", reference, top.digest, image.id)
    return PullResult(image, reference, top.digest, not already)


def _fetch_config(client, repository: str, descriptor: dict) -> bytes:
    digest = descriptor["digest"]
    size = descriptor.get("size")
    if size is not None and size > MAX_CONFIG_SIZE:
        raise RegistryError(f"image config {digest} is {size} bytes, over the {MAX_CONFIG_SIZE}-byte limit")
    response = client.request("GET", f"/v2/{repository}/blobs/{digest}")
    data = response.read(MAX_CONFIG_SIZE + 1)
    check_bytes(data, digest, size, kind="image config")
    return data


def _pull_layer(engine, client, reference, descriptor: dict, diff_id: str, blob_info: BlobInfo, say):
    digest = check_digest(descriptor.get("digest", ""))
    media_type = descriptor.get("mediaType", "")
    size = descriptor.get("size")
    short = short_id(digest)
    if NON_DISTRIBUTABLE in media_type or "foreign" in media_type:
        raise RegistryError(f"layer {digest} of {reference.familiar} is non-distributable ({media_type}): not supported")

    if engine.store.has_blob(diff_id):
        say(LayerProgress(short, "Already exists"))
        return store_layer(engine.store, None, media_type=media_type, diff_id=diff_id)

    say(LayerProgress(short, "Pulling fs layer"))
    # Layers are decompressed as they arrive, so there is no separate "Extracting" phase.
    downloaded = ByteProgress(say, short, "Downloading", size)
    response = client.request("GET", f"/v2/{reference.repository}/blobs/{digest}")
    try:
        stored = store_layer(engine.store, response, media_type=media_type, diff_id=diff_id,
                             expected_digest=digest, expected_size=size, on_bytes=downloaded.advance)
    except BlobMismatchError as error:
        raise BlobMismatchError(f"{reference.familiar}: {error}; nothing was stored") from None
    except (OSError, TimeoutError) as error:
        raise RegistryError(f"download of layer {digest} from {reference.registry} failed: {error}") from None
    finally:
        response.close()
    say(LayerProgress(short, "Pull complete"))
    if size is not None:
        blob_info.remember(diff_id, CompressedBlob(digest, size, media_type, reference.registry, reference.repository))
    return stored


def image_or_pull(engine, name: str, progress: Callable[[str], None] | None = None) -> Image:
    """Return the image `name` from the store, pulling it first if its reference names a registry.

    Only references with an explicit registry host are pulled: a bare name
    such as `busybox` keeps the store's not-found error with its bootstrap
    hint, so offline classrooms get that hint at once instead of a timeout
    against Docker Hub.
    """
    try:
        return engine.images.resolve(name)
    except NotFoundError as missing:
        try:
            reference = Reference.parse(name)
        except InvalidArgumentError:
            raise missing from None
        if reference.registry == "docker.io":
            raise
        say = progress or (lambda text: None)
        say(f"Unable to find image '{reference.familiar}' locally\n")
        try:
            return pull(engine, name, progress=progress).image
        except RegistryError as error:
            raise NotFoundError(f"{missing}; pulling it from {reference.registry} failed: {error}") from None
