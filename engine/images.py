"""Image names: tags, image IDs, the build cache and parent links in `index.json`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from layerlab.engine.errors import ConflictError, InvalidArgumentError, NotFoundError
from layerlab.engine.image import Image, load_image
from layerlab.engine.reference import Reference, looks_like_image_id
from layerlab.engine.store import (
    ANNOTATION_CACHE_KEY,
    ANNOTATION_IMAGE_ID,
    ANNOTATION_PARENT,
    ANNOTATION_REF_NAME,
    ANNOTATION_UNTAGGED,
    Descriptor,
    Store,
)

log = logging.getLogger(__name__)

SCRATCH = "scratch"

# The `name@digest` references that registries gave this image's manifest at pull or push, comma-separated.
# Docker shows them as RepoDigests. The local manifest differs from the registry's, because layers are stored
# uncompressed here.
ANNOTATION_REPO_DIGESTS = "dev.layerlab.repo.digests"
# The manifests that registries served for this image, kept byte for byte as blobs in the store, as
# comma-separated `name@digest` entries (one per repository name). A push to a registry that has
# their compressed layers sends one of them unchanged, so the image keeps its manifest digest there.
# These entries are what keeps the blobs from garbage collection.
ANNOTATION_REGISTRY_MANIFESTS = "dev.layerlab.registry.manifests"


@dataclass
class ImageEntry:
    """One row of `layerlab images`: an image ID with one of its names, or none."""

    image_id: str
    reference: Reference | None
    descriptor: Descriptor


class ImageIndex:
    """Names and cache entries over the store's `index.json`."""

    def __init__(self, store: Store):
        self.store = store

    # Lookup

    def entries(self) -> list[ImageEntry]:
        """List named and untagged images (not cache entries), newest descriptor last."""
        entries = []
        for descriptor in self.store.descriptors():
            annotations = descriptor.annotations
            image_id = annotations.get(ANNOTATION_IMAGE_ID)
            if image_id is None:
                continue
            if ANNOTATION_REF_NAME in annotations:
                entries.append(ImageEntry(image_id, Reference.parse(annotations[ANNOTATION_REF_NAME]), descriptor))
            elif ANNOTATION_UNTAGGED in annotations:
                entries.append(ImageEntry(image_id, None, descriptor))
        return entries

    def resolve(self, name: str) -> Image:
        """Find an image by reference, full or short image ID."""
        descriptor = self.find_descriptor(name)
        if descriptor is None:
            raise NotFoundError(image_not_found_message(name))
        return load_image(self.store, descriptor.digest)

    def find_descriptor(self, name: str) -> Descriptor | None:
        """Look `name` up as Docker does: a full ID, then a reference, then an ID prefix."""
        descriptors = self.store.descriptors()
        bare = name.removeprefix("sha256:")
        if name.startswith("sha256:") or looks_like_image_id(name):
            return self._find_by_id_prefix(bare, descriptors)

        try:
            reference = Reference.parse(name)
        except InvalidArgumentError:
            if _is_hex_prefix(name):
                return self._find_by_id_prefix(bare, descriptors)
            raise
        if reference.digest:
            return _find_by_digest(reference, descriptors)
        expected_name = str(reference)
        for descriptor in descriptors:
            if descriptor.annotations.get(ANNOTATION_REF_NAME) == expected_name:
                return descriptor
        if _is_hex_prefix(name):
            return self._find_by_id_prefix(bare, descriptors)
        return None

    def _find_by_id_prefix(self, prefix: str, descriptors: list[Descriptor]) -> Descriptor | None:
        matches: dict[str, Descriptor] = {}
        for descriptor in descriptors:
            image_id = descriptor.annotations.get(ANNOTATION_IMAGE_ID, "")
            if image_id.removeprefix("sha256:").startswith(prefix):
                matches.setdefault(image_id, descriptor)
        if len(matches) > 1:
            raise ConflictError(f"image ID prefix {prefix!r} matches {len(matches)} images: give more digits")
        return next(iter(matches.values()), None)

    def repo_digests(self, image_id: str) -> list[str]:
        """Return the `name@digest` references that registries gave the image, in the order they were recorded."""
        found: list[str] = []
        for descriptor in self.store.descriptors():
            if descriptor.annotations.get(ANNOTATION_IMAGE_ID) == image_id:
                for entry in _repo_digests(descriptor):
                    if entry not in found:
                        found.append(entry)
        return found

    def add_repo_digest(self, image_id: str, reference: Reference, digest: str) -> None:
        """Record that the registry of `reference` stores the image's manifest as `digest`.

        A repository has one digest per image, so an older digest of the
        same repository is replaced.
        """
        self._add_named_digest(ANNOTATION_REPO_DIGESTS, image_id, reference, digest)

    def registry_manifests(self, image_id: str) -> list[tuple[Reference, str]]:
        """Return the (repository, blob digest) of each registry manifest kept for the image, newest first."""
        found: list[str] = []
        for descriptor in self.store.descriptors():
            if descriptor.annotations.get(ANNOTATION_IMAGE_ID) == image_id:
                for entry in _named_digests(descriptor, ANNOTATION_REGISTRY_MANIFESTS):
                    if entry not in found:
                        found.append(entry)
        kept = []
        for entry in reversed(found):
            name, _, digest = entry.partition("@")
            kept.append((Reference.parse(name), digest))
        return kept

    def keep_registry_manifest(self, image_id: str, reference: Reference, digest: str) -> None:
        """Record the blob `digest`, the manifest bytes that the registry of `reference` serves for the image.

        The blob must be in the store already. A repository keeps one
        manifest per image, so an older one of the same repository is
        replaced and becomes garbage unless another entry names it.
        """
        self._add_named_digest(ANNOTATION_REGISTRY_MANIFESTS, image_id, reference, digest)

    def drop_registry_manifest(self, digest: str) -> None:
        """Remove every entry that names the kept manifest `digest` (for `fsck --repair` when its blob is gone)."""

        def change(descriptors: list[Descriptor]) -> None:
            for descriptor in descriptors:
                entries = _named_digests(descriptor, ANNOTATION_REGISTRY_MANIFESTS)
                kept = [entry for entry in entries if entry.partition("@")[2] != digest]
                if kept != entries:
                    _set_named_digests(descriptor, ANNOTATION_REGISTRY_MANIFESTS, kept)

        self.store.update_index(change)

    def _add_named_digest(self, annotation: str, image_id: str, reference: Reference, digest: str) -> None:
        entry = f"{reference.name}@{digest}"

        def change(descriptors: list[Descriptor]) -> None:
            for descriptor in descriptors:
                if descriptor.annotations.get(ANNOTATION_IMAGE_ID) != image_id or not _is_listed(descriptor):
                    continue
                kept = [old for old in _named_digests(descriptor, annotation) if old.partition("@")[0] != reference.name]
                _set_named_digests(descriptor, annotation, kept + [entry])

        self.store.update_index(change)

    def references_to(self, image_id: str) -> list[Reference]:
        return [entry.reference for entry in self.entries() if entry.image_id == image_id and entry.reference]

    def parent_of(self, image_id: str) -> str | None:
        for descriptor in self.store.descriptors():
            if descriptor.annotations.get(ANNOTATION_IMAGE_ID) == image_id:
                parent = descriptor.annotations.get(ANNOTATION_PARENT)
                if parent:
                    return parent
        return None

    def parent_links(self) -> dict[str, str]:
        """Return {image ID: parent image ID} for every image with a recorded parent, from one read of the index."""
        links: dict[str, str] = {}
        for descriptor in self.store.descriptors():
            image_id = descriptor.annotations.get(ANNOTATION_IMAGE_ID)
            parent = descriptor.annotations.get(ANNOTATION_PARENT)
            if image_id and parent:
                links.setdefault(image_id, parent)
        return links

    def has_dependent_children(self, image_id: str) -> bool:
        """Tell whether a tagged or untagged image descends from `image_id`.

        The walk follows parent links through build cache entries, so an image built
        FROM this one counts even when its direct parent is an unlisted build step.
        """
        descriptors = self.store.descriptors()
        links: dict[str, str] = {}
        listed: set[str] = set()
        for descriptor in descriptors:
            child = descriptor.annotations.get(ANNOTATION_IMAGE_ID)
            parent = descriptor.annotations.get(ANNOTATION_PARENT)
            if child and parent:
                links.setdefault(child, parent)
            if child and _is_listed(descriptor):
                listed.add(child)

        for candidate in listed - {image_id}:
            seen = {candidate}
            ancestor = links.get(candidate)
            while ancestor and ancestor not in seen:
                if ancestor == image_id:
                    return True
                seen.add(ancestor)
                ancestor = links.get(ancestor)
        return False

    def known_image_ids(self) -> set[str]:
        return {d.annotations[ANNOTATION_IMAGE_ID] for d in self.store.descriptors() if ANNOTATION_IMAGE_ID in d.annotations}

    # Naming

    def tag(self, image: Image, reference: Reference, parent: str | None = None) -> None:
        """Point `reference` at `image`; the image it named before keeps an untagged entry if nothing else names it."""
        expected_name = str(reference)
        descriptor = image.manifest_descriptor(_image_annotations(image.id, parent))
        descriptor.annotations[ANNOTATION_REF_NAME] = expected_name

        def change(descriptors: list[Descriptor]) -> list[Descriptor]:
            # A new name keeps the digests and manifests that registries gave the image under its other names.
            for annotation in (ANNOTATION_REPO_DIGESTS, ANNOTATION_REGISTRY_MANIFESTS):
                recorded = [d for d in descriptors
                            if d.annotations.get(ANNOTATION_IMAGE_ID) == image.id and _named_digests(d, annotation)]
                if recorded:
                    descriptor.annotations[annotation] = recorded[-1].annotations[annotation]
            remaining = []
            replaced = None
            for entry in descriptors:
                if entry.annotations.get(ANNOTATION_REF_NAME) == expected_name:
                    replaced = entry
                    continue
                if entry.annotations.get(ANNOTATION_UNTAGGED) and entry.annotations.get(ANNOTATION_IMAGE_ID) == image.id:
                    continue
                remaining.append(entry)
            remaining.append(descriptor)
            if replaced is not None and replaced.annotations.get(ANNOTATION_IMAGE_ID) != image.id:
                remaining.extend(_untagged_if_orphaned(replaced, remaining))
            return remaining

        self.store.update_index(change)

    def add_untagged(self, image: Image, parent: str | None = None) -> None:
        """Record an image with no name, shown as `<none>` like Docker's dangling images."""
        annotations = _image_annotations(image.id, parent)
        annotations[ANNOTATION_UNTAGGED] = "true"

        def change(descriptors: list[Descriptor]) -> None:
            if not any(d.annotations.get(ANNOTATION_IMAGE_ID) == image.id and _is_listed(d) for d in descriptors):
                descriptors.append(image.manifest_descriptor(annotations))

        self.store.update_index(change)

    def untag(self, reference: Reference) -> Descriptor:
        expected_name = str(reference)
        removed: list[Descriptor] = []

        def change(descriptors: list[Descriptor]) -> list[Descriptor]:
            removed.extend(d for d in descriptors if d.annotations.get(ANNOTATION_REF_NAME) == expected_name)
            return [d for d in descriptors if d.annotations.get(ANNOTATION_REF_NAME) != expected_name]

        self.store.update_index(change)
        if not removed:
            raise NotFoundError(f"No such image: {reference.familiar}")
        return removed[0]

    def forget_image(self, image_id: str) -> None:
        """Remove every name, untagged entry and cache entry of `image_id`."""

        def change(descriptors: list[Descriptor]) -> list[Descriptor]:
            return [d for d in descriptors if d.annotations.get(ANNOTATION_IMAGE_ID) != image_id]

        self.store.update_index(change)

    # Build cache

    def cache_lookup(self) -> dict[str, Descriptor]:
        """Read every cache entry at once: a build looks up many keys against one snapshot."""
        return {
            d.annotations[ANNOTATION_CACHE_KEY]: d
            for d in self.store.descriptors()
            if ANNOTATION_CACHE_KEY in d.annotations
        }

    def cache_put(self, key: str, image: Image, parent: str | None) -> None:
        annotations = _image_annotations(image.id, parent)
        annotations[ANNOTATION_CACHE_KEY] = key

        def change(descriptors: list[Descriptor]) -> list[Descriptor]:
            remaining = [d for d in descriptors if d.annotations.get(ANNOTATION_CACHE_KEY) != key]
            remaining.append(image.manifest_descriptor(annotations))
            return remaining

        self.store.update_index(change)

    def prune_cache(self) -> int:
        removed = []

        def change(descriptors: list[Descriptor]) -> list[Descriptor]:
            removed.extend(d for d in descriptors if ANNOTATION_CACHE_KEY in d.annotations)
            return [d for d in descriptors if ANNOTATION_CACHE_KEY not in d.annotations]

        self.store.update_index(change)
        return len(removed)


def image_not_found_message(name: str) -> str:
    if name == SCRATCH:
        return "'scratch' is a reserved name: use it only in FROM"
    try:
        familiar = Reference.parse(name).familiar
    except InvalidArgumentError:
        familiar = name
    hint = _bootstrap_hint(familiar)
    return f"No such image: {familiar}: {hint}"


def _bootstrap_hint(familiar: str) -> str:
    if familiar.startswith("busybox"):
        return "run `layerlab bootstrap busybox` to make it locally"
    if familiar.startswith("debian:"):
        return f"run `layerlab bootstrap {familiar}` to make it locally"
    return "build it, load it, or make a base image with `layerlab bootstrap busybox` or `layerlab bootstrap debian:bookworm`"


def _image_annotations(image_id: str, parent: str | None) -> dict[str, str]:
    annotations = {ANNOTATION_IMAGE_ID: image_id}
    if parent:
        annotations[ANNOTATION_PARENT] = parent
    return annotations


def _is_listed(descriptor: Descriptor) -> bool:
    return ANNOTATION_REF_NAME in descriptor.annotations or ANNOTATION_UNTAGGED in descriptor.annotations


def _untagged_if_orphaned(old: Descriptor, remaining: list[Descriptor]) -> list[Descriptor]:
    image_id = old.annotations.get(ANNOTATION_IMAGE_ID)
    if any(d.annotations.get(ANNOTATION_IMAGE_ID) == image_id and _is_listed(d) for d in remaining):
        return []
    annotations = {k: v for k, v in old.annotations.items() if k != ANNOTATION_REF_NAME}
    annotations[ANNOTATION_UNTAGGED] = "true"
    return [Descriptor(old.media_type, old.digest, old.size, annotations)]


def registry_manifest_blobs(descriptor: Descriptor) -> list[str]:
    """Return the digests of the kept registry manifests that `descriptor` names."""
    return [entry.partition("@")[2] for entry in _named_digests(descriptor, ANNOTATION_REGISTRY_MANIFESTS)]


def _repo_digests(descriptor: Descriptor) -> list[str]:
    return _named_digests(descriptor, ANNOTATION_REPO_DIGESTS)


def _named_digests(descriptor: Descriptor, annotation: str) -> list[str]:
    text = descriptor.annotations.get(annotation, "")
    return [entry for entry in text.split(",") if entry]


def _set_named_digests(descriptor: Descriptor, annotation: str, entries: list[str]) -> None:
    if entries:
        descriptor.annotations[annotation] = ",".join(entries)
    else:
        descriptor.annotations.pop(annotation, None)


def _find_by_digest(reference: Reference, descriptors: list[Descriptor]) -> Descriptor | None:
    """Find the image that `name@digest` names: its local manifest digest, or a digest a registry gave it for name."""
    pinned = f"{reference.name}@{reference.digest}"
    for descriptor in descriptors:
        if not _is_listed(descriptor):
            continue
        if pinned in _repo_digests(descriptor):
            return descriptor
        ref_name = descriptor.annotations.get(ANNOTATION_REF_NAME)
        if descriptor.digest == reference.digest and ref_name and Reference.parse(ref_name).name == reference.name:
            return descriptor
    return None


def _is_hex_prefix(text: str) -> bool:
    return bool(text) and all(ch in "0123456789abcdef" for ch in text)
