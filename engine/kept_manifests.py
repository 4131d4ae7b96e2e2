"""Entries of the `dev.layerlab.registry.manifests` annotation, checked one by one.

Each entry is `name@digest`, where `name` is a canonical repository name
(`Reference.name`) and `digest` names a manifest blob in the store.
`ImageIndex.registry_manifests` raises on the first entry it cannot parse,
so fsck and push read the annotation here: a malformed entry (a hand edit,
a damaged index.json) is reported or skipped alone and the others stay usable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from layerlab.engine.digest import check_digest
from layerlab.engine.errors import InvalidArgumentError
from layerlab.engine.images import ANNOTATION_REGISTRY_MANIFESTS
from layerlab.engine.reference import Reference
from layerlab.engine.store import ANNOTATION_IMAGE_ID, Descriptor, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeptEntry:
    """One `name@digest` entry: the repository that served the manifest and the blob digest it is kept under."""

    reference: Reference
    digest: str


def parse_kept_entry(text: str) -> KeptEntry | None:
    """Parse one `name@digest` entry; return None when it is malformed."""
    name, separator, digest = text.partition("@")
    if not separator:
        return None
    try:
        check_digest(digest)
        reference = Reference.parse(name)
    except InvalidArgumentError:
        return None
    # Entries are written with `Reference.name`, so any other spelling (a tag, a short name) was not written by layerlab.
    if reference.name != name:
        return None
    return KeptEntry(reference, digest)


def entry_texts(descriptor: Descriptor) -> list[str]:
    """Return the raw entries of the annotation on `descriptor`, in the order they were added."""
    text = descriptor.annotations.get(ANNOTATION_REGISTRY_MANIFESTS, "")
    return [entry for entry in text.split(",") if entry]


def malformed_entries(descriptor: Descriptor) -> list[str]:
    return [text for text in entry_texts(descriptor) if parse_kept_entry(text) is None]


def valid_kept_entries(store: Store, image_id: str) -> list[KeptEntry]:
    """Return the well-formed kept manifest entries of the image, newest first, skipping malformed ones."""
    found: list[str] = []
    for descriptor in store.descriptors():
        if descriptor.annotations.get(ANNOTATION_IMAGE_ID) != image_id:
            continue
        for text in entry_texts(descriptor):
            if text not in found:
                found.append(text)
    entries = []
    for text in reversed(found):
        entry = parse_kept_entry(text)
        if entry is None:
            log.warning("ignoring the invalid kept registry manifest entry %r of image %s in annotation %s: "
                        "run `layerlab fsck --repair` to drop it", text, image_id, ANNOTATION_REGISTRY_MANIFESTS)
            continue
        entries.append(entry)
    return entries


def drop_malformed_entries(store: Store) -> None:
    """Remove every malformed entry from the annotation, keeping the well-formed ones in order."""

    def change(descriptors: list[Descriptor]) -> None:
        for descriptor in descriptors:
            texts = entry_texts(descriptor)
            kept = [text for text in texts if parse_kept_entry(text) is not None]
            if kept == texts:
                continue
            if kept:
                descriptor.annotations[ANNOTATION_REGISTRY_MANIFESTS] = ",".join(kept)
            else:
                descriptor.annotations.pop(ANNOTATION_REGISTRY_MANIFESTS, None)

    store.update_index(change)
