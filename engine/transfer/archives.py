"""`save` and `load`: images in docker-archive and oci-archive tar files.

A docker-archive is what `docker save` writes and `docker load` and
`podman load` read: `manifest.json` (one entry per image: its config file,
its tags and its layer tars in order), `repositories` (legacy name -> tag
-> ID map), the config as `<image ID hex>.json` and each layer as
`<diff ID hex>/layer.tar`. An oci-archive is an OCI image layout in a tar
(`oci-layout`, `index.json`, `blobs/sha256/`), with each image named by
`org.opencontainers.image.ref.name` and containerd's
`io.containerd.image.name`.

Configs are copied byte for byte both ways, so image IDs survive a round
trip through Docker or podman. Loading reads members by name from the tar
and never extracts it to disk, so member paths cannot escape anywhere. Each
layer is decompressed if it needs to be and must match its config's diff
ID before it is stored.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
from collections.abc import Callable

from layerlab.engine.digest import check_digest, hex_part
from layerlab.engine.errors import InvalidArgumentError
from layerlab.engine.image import Image
from layerlab.engine.reference import Reference, looks_like_image_id
from layerlab.engine.store import ANNOTATION_REF_NAME, MEDIA_TYPE_INDEX
from layerlab.engine.transfer.images import commit_image, parse_config
from layerlab.engine.transfer.layers import BlobMismatchError, check_bytes, store_layer

log = logging.getLogger(__name__)

DOCKER_ARCHIVE = "docker-archive"
OCI_ARCHIVE = "oci-archive"
FORMATS = (DOCKER_ARCHIVE, OCI_ARCHIVE)
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
# Manifests and configs are small JSON documents; the cap keeps a hostile archive from filling memory.
MAX_DOCUMENT_SIZE = 4 * 1024 * 1024


# Saving


def save(engine, names: list[str], fileobj, *, format: str = DOCKER_ARCHIVE) -> None:
    """Write the images `names` (references or IDs) to `fileobj` as one archive."""
    if format not in FORMATS:
        raise InvalidArgumentError(f"unknown archive format {format!r}: expected {' or '.join(FORMATS)}")
    if not names:
        raise InvalidArgumentError("save needs at least one image name")
    images = [(name, engine.images.resolve(name)) for name in names]
    tags = {name: _tag_of(engine.store, name) for name in names}
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as archive:
        if format == DOCKER_ARCHIVE:
            _save_docker(engine.store, images, tags, archive)
        else:
            _save_oci(engine.store, images, tags, archive)


def _tag_of(store, name: str) -> Reference | None:
    """Return the tag that `name` resolved through, or None when it named an image by ID or digest.

    A short ID such as `3f57d9401f8d` also parses as a reference, so only
    a reference that a tag in the store carries counts.
    """
    if looks_like_image_id(name):
        return None
    try:
        reference = Reference.parse(name)
    except InvalidArgumentError:
        return None
    if not reference.tag or reference.digest:
        return None
    tagged = {descriptor.annotations.get(ANNOTATION_REF_NAME) for descriptor in store.descriptors()}
    return reference if str(reference) in tagged else None


def _save_docker(store, images: list[tuple[str, Image]], tags: dict[str, Reference | None],
                 archive: tarfile.TarFile) -> None:
    entries: dict[str, dict] = {}
    repositories: dict[str, dict[str, str]] = {}
    written: set[str] = set()
    for name, image in images:
        config_name = f"{hex_part(image.id)}.json"
        entry = entries.get(image.id)
        if entry is None:
            layer_names = [f"{hex_part(layer.digest)}/layer.tar" for layer in image.layers]
            entry = {"Config": config_name, "RepoTags": [], "Layers": layer_names}
            entries[image.id] = entry
            _add_blob(archive, store, image.id, config_name, written)
            for layer, layer_name in zip(image.layers, layer_names):
                _add_blob(archive, store, layer.digest, layer_name, written)
        reference = tags[name]
        if reference is not None and reference.familiar not in entry["RepoTags"]:
            entry["RepoTags"].append(reference.familiar)
            repositories.setdefault(reference.familiar_name, {})[reference.tag] = hex_part(image.id)

    manifest = [dict(entry, RepoTags=entry["RepoTags"] or None) for entry in entries.values()]
    _add_bytes(archive, "manifest.json", json.dumps(manifest).encode())
    if repositories:
        _add_bytes(archive, "repositories", json.dumps(repositories).encode())


def _save_oci(store, images: list[tuple[str, Image]], tags: dict[str, Reference | None],
              archive: tarfile.TarFile) -> None:
    _add_bytes(archive, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    written: set[str] = set()
    descriptors = []
    for name, image in images:
        for digest in [image.manifest_digest, image.id, *[layer.digest for layer in image.layers]]:
            _add_blob(archive, store, digest, f"blobs/sha256/{hex_part(digest)}", written)
        reference = tags[name]
        annotations = {}
        if reference is not None:
            annotations = {ANNOTATION_REF_NAME: str(reference), ANNOTATION_CONTAINERD_NAME: str(reference)}
        descriptors.append(image.manifest_descriptor(annotations).to_json())
    index = {"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": descriptors}
    _add_bytes(archive, "index.json", json.dumps(index).encode())


def _add_blob(archive: tarfile.TarFile, store, digest: str, name: str, written: set[str]) -> None:
    if name in written:
        return
    written.add(name)
    with store.open_blob(digest) as blob:
        info = tarfile.TarInfo(name)
        blob.seek(0, io.SEEK_END)
        info.size = blob.tell()
        blob.seek(0)
        info.mode = 0o644
        archive.addfile(info, blob)


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


# Loading


def load(engine, path: str, progress: Callable[[str], None] | None = None, *,
         display_name: str | None = None) -> list[str]:
    """Load every image in the archive at `path` (either format, optionally compressed); return Docker's lines.

    Messages name the archive `display_name` (such as "standard input" for
    a spooled copy), else `path`.
    """
    say = progress or (lambda text: None)
    name = display_name or path
    try:
        archive = tarfile.open(path, mode="r:*")
    except IsADirectoryError:
        raise InvalidArgumentError(f"cannot load {name}: it is a directory: give an archive that `save` wrote") from None
    except OSError as error:
        raise InvalidArgumentError(f"cannot read {name}: {error.strerror or error}") from None
    except EOFError:
        raise InvalidArgumentError(_truncated_message(name)) from None
    except tarfile.TarError:
        # tarfile lists every compression it tried, on several lines, so the message is ours.
        raise InvalidArgumentError(
            f"invalid archive {name}: it is not a tar file (plain, gzip, bzip2 or xz): "
            "give an archive that `save` or `docker save` wrote"
        ) from None
    try:
        with archive, engine.store.gc_shared():
            engine.store.remove_stale_tmp()
            members = {member.name.removeprefix("./"): member for member in archive.getmembers()}
            reader = _ArchiveReader(archive, members, name)
            if "manifest.json" in members:
                return _load_docker(engine, reader, say)
            if "index.json" in members:
                return _load_oci(engine, reader, say)
    except (EOFError, tarfile.ReadError) as error:
        # getmembers() reads the whole archive, so a cut-off archive fails here before any layer is stored.
        log.debug("reading %s failed: %s", name, error)
        raise InvalidArgumentError(_truncated_message(name)) from None
    raise InvalidArgumentError(
        f"{name} is neither a docker-archive (no manifest.json) nor an oci-archive (no index.json)"
    )


def _truncated_message(name: str) -> str:
    return f"invalid archive {name}: it ends early (truncated?): save the images again and load the whole file"


class _ArchiveReader:
    def __init__(self, archive: tarfile.TarFile, members: dict[str, tarfile.TarInfo], path: str):
        self.archive = archive
        self.members = members
        self.path = path

    def open(self, name: str):
        member = self.members.get(name.removeprefix("./"))
        if member is None:
            raise InvalidArgumentError(f"{self.path} has no member {name!r}: the archive is incomplete")
        stream = self.archive.extractfile(member)
        if stream is None:
            raise InvalidArgumentError(f"{self.path}: member {name!r} is not a file")
        return stream

    def read_document(self, name: str) -> bytes:
        data = self.open(name).read(MAX_DOCUMENT_SIZE + 1)
        if len(data) > MAX_DOCUMENT_SIZE:
            raise InvalidArgumentError(f"{self.path}: {name} is over the {MAX_DOCUMENT_SIZE}-byte limit")
        return data

    def read_json(self, name: str):
        try:
            return json.loads(self.read_document(name))
        except (UnicodeDecodeError, ValueError) as error:
            raise InvalidArgumentError(f"{self.path}: {name} is not valid JSON: {error}") from None


def _load_docker(engine, reader: _ArchiveReader, say) -> list[str]:
    lines = []
    entries = reader.read_json("manifest.json")
    if not isinstance(entries, list):
        raise InvalidArgumentError(f"{reader.path}: manifest.json must be a list of images")
    if not entries:
        raise InvalidArgumentError(f"invalid archive {reader.path}: its manifest.json lists no images")
    for entry in entries:
        config_bytes = reader.read_document(entry["Config"])
        config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        config = parse_config(config_bytes, f"{reader.path}:{entry['Config']}")
        diff_ids = config["rootfs"]["diff_ids"]
        layer_names = entry.get("Layers") or []
        if len(layer_names) != len(diff_ids):
            raise InvalidArgumentError(
                f"{reader.path}: image {config_digest} lists {len(layer_names)} layers but its config "
                f"{len(diff_ids)} diff IDs"
            )
        layers = []
        for layer_name, diff_id in zip(layer_names, diff_ids):
            # Layers in a docker-archive have no descriptor; the diff ID check covers them.
            layers.append(store_layer(engine.store, reader.open(layer_name), media_type="",
                                      diff_id=check_digest(diff_id)))
        image = commit_image(engine.store, config_bytes, config_digest, layers)
        lines.extend(_name_loaded(engine, image, entry.get("RepoTags") or [], say))
    return lines


def _load_oci(engine, reader: _ArchiveReader, say) -> list[str]:
    from layerlab.engine.registry.manifests import INDEX_TYPES, Platform

    lines = []
    index = reader.read_json("index.json")
    descriptors = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(descriptors, list):
        raise InvalidArgumentError(f"{reader.path}: index.json must be an object with a \"manifests\" list")
    if not descriptors:
        raise InvalidArgumentError(f"invalid archive {reader.path}: its index.json lists no images")
    for descriptor in descriptors:
        annotations = descriptor.get("annotations") or {}
        if descriptor.get("mediaType") in INDEX_TYPES:
            nested = _read_checked_json(reader, descriptor)
            requested = Platform.host()
            matching = [d for d in nested.get("manifests", []) if requested.matches(d.get("platform") or {})]
            if not matching:
                raise InvalidArgumentError(f"{reader.path}: index {descriptor['digest']} has no image for {requested}")
            descriptor = matching[0]
        manifest = _read_checked_json(reader, descriptor)
        config_descriptor = manifest["config"]
        config_bytes = reader.read_document(_blob_name(config_descriptor["digest"]))
        try:
            check_bytes(config_bytes, config_descriptor["digest"], config_descriptor.get("size"), kind="image config")
        except BlobMismatchError as error:
            raise BlobMismatchError(f"{reader.path}: {error}") from None
        config = parse_config(config_bytes, f"{reader.path}:{config_descriptor['digest']}")
        layers = []
        for layer, diff_id in zip(manifest.get("layers") or [], config["rootfs"]["diff_ids"]):
            layers.append(store_layer(engine.store, reader.open(_blob_name(layer["digest"])),
                                      media_type=layer.get("mediaType", ""), diff_id=check_digest(diff_id),
                                      expected_digest=layer["digest"], expected_size=layer.get("size")))
        image = commit_image(engine.store, config_bytes, config_descriptor["digest"], layers)
        name = annotations.get(ANNOTATION_CONTAINERD_NAME) or annotations.get(ANNOTATION_REF_NAME)
        lines.extend(_name_loaded(engine, image, [name] if name and _is_full_name(name) else [], say))
    return lines


def _read_checked_json(reader: _ArchiveReader, descriptor: dict) -> dict:
    data = reader.read_document(_blob_name(descriptor["digest"]))
    check_bytes(data, descriptor["digest"], descriptor.get("size"), kind="manifest")
    return json.loads(data)


def _blob_name(digest: str) -> str:
    return f"blobs/sha256/{hex_part(digest)}"


def _is_full_name(name: str) -> bool:
    """Return whether an OCI ref.name annotation is an image reference rather than a bare tag."""
    try:
        Reference.parse(name)
    except InvalidArgumentError:
        return False
    return "/" in name or ":" in name


def _name_loaded(engine, image: Image, names: list[str], say) -> list[str]:
    lines = []
    for name in names:
        reference = Reference.parse(name)
        engine.images.tag(image, reference)
        lines.append(f"Loaded image: {reference.familiar}")
    if not names:
        engine.images.add_untagged(image)
        lines.append(f"Loaded image ID: {image.id}")
    for line in lines:
        say(line + "\n")
    log.info("loaded image %s", image.id)
    return lines
