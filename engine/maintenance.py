"""Store upkeep: `fsck`, `system prune`, `system df` and `info`."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable

from layerlab.engine.image import load_image
from layerlab.engine.images import ANNOTATION_REGISTRY_MANIFESTS, registry_manifest_blobs
from layerlab.engine.kept_manifests import drop_malformed_entries, entry_texts, malformed_entries, parse_kept_entry
from layerlab.engine.listing import tree_size
from layerlab.engine.rootless import remove_tree
from layerlab.engine.store import ANNOTATION_IMAGE_ID, ANNOTATION_REF_NAME

log = logging.getLogger(__name__)

HASH_BUFFER = 1 << 20


def referenced_blobs(engine) -> set[str]:
    """Return every blob digest that a descriptor in index.json reaches."""
    reached = set()
    for descriptor in engine.store.descriptors():
        reached.add(descriptor.digest)
        reached.update(registry_manifest_blobs(descriptor))
        try:
            image = load_image(engine.store, descriptor.digest)
        except Exception as error:  # noqa: BLE001 - fsck reports the broken entry separately
            log.warning("cannot read manifest %s: %s", descriptor.digest, error)
            continue
        reached.add(image.id)
        reached.update(layer.digest for layer in image.layers)
    return reached


def leftover_paths(engine) -> list[str]:
    """Return what interrupted writes left: everything in tmp/ and the staging folders of snapshots and containers.

    None of it is in use only while the caller has `Store.gc_exclusive`.
    """
    paths = [os.path.join(engine.store.tmp_dir, name) for name in os.listdir(engine.store.tmp_dir)]
    for folder in (engine.snapshots.root, engine.containers.root):
        paths += [os.path.join(folder, name) for name in os.listdir(folder) if name.startswith(".")]
    return paths


def leftovers_size(engine) -> int:
    """Return the bytes in `leftover_paths`."""
    return sum(tree_size(path) if os.path.isdir(path) else _file_size(path) for path in leftover_paths(engine))


def remove_leftovers(engine) -> int:
    """Delete `leftover_paths` and return the bytes freed. The caller must have `Store.gc_exclusive`."""
    freed = leftovers_size(engine)
    for name in os.listdir(engine.store.tmp_dir):
        path = os.path.join(engine.store.tmp_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            remove_tree(path)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    engine.snapshots.remove_partial()
    engine.containers.remove_partial()
    return freed


def fsck(engine, *, repair: bool = False, on_wait: Callable[[], None] | None = None,
         on_note: Callable[[str], None] | None = None) -> list[str]:
    """Check blobs against their digests and references against blobs; return the problems found.

    A repair waits (calling `on_wait` once) until no build, pull or commit
    is running, since it deletes their temporary files. A plain check
    counts temporary files only when no such operation is running, and
    otherwise passes a note about the skipped check to `on_note`.
    """
    if repair:
        with engine.store.gc_exclusive(on_wait):
            return _fsck(engine, repair=True, on_note=on_note)
    return _fsck(engine, repair=False, on_note=on_note)


def _fsck(engine, *, repair: bool, on_note: Callable[[str], None] | None) -> list[str]:
    problems = []
    store = engine.store
    for digest in store.iter_blobs():
        if _hash_file(store.blob_path(digest)) != digest:
            problems.append(f"blob {digest} does not match its digest")
            if repair:
                os.unlink(store.blob_path(digest))

    for descriptor in store.descriptors():
        missing = [d for d in _descriptor_blobs(engine, descriptor) if not store.has_blob(d)]
        if missing:
            problems.append(f"index entry {descriptor.annotations} lacks blobs {', '.join(missing)}")
            if repair:
                store.update_index(lambda ds, bad=descriptor.digest: [d for d in ds if d.digest != bad])

    # Push skips a malformed entry, so a repair drops it and keeps the image and the other entries.
    malformed = [(descriptor, text) for descriptor in store.descriptors() for text in malformed_entries(descriptor)]
    for descriptor, text in malformed:
        problems.append(f"image {_image_name(descriptor)}: invalid kept registry manifest entry {text!r} "
                        f"in annotation {ANNOTATION_REGISTRY_MANIFESTS}")
    if malformed and repair:
        drop_malformed_entries(store)

    # A lost registry manifest costs only the digest on the next push, so a repair drops its entries and keeps the image.
    lost_manifests = {entry.digest for descriptor in store.descriptors() for text in entry_texts(descriptor)
                      if (entry := parse_kept_entry(text)) is not None and not store.has_blob(entry.digest)}
    for digest in sorted(lost_manifests):
        problems.append(f"registry manifest {digest} kept for push is missing")
        if repair:
            engine.images.drop_registry_manifest(digest)

    # The caller of a repair holds the lock already, and this process passes through it.
    with store.try_gc_exclusive() as idle:
        if idle:
            leftovers = len(os.listdir(store.tmp_dir))
            if repair:
                remove_leftovers(engine)
            if leftovers and repair:
                problems.append(f"removed {leftovers} temporary files from interrupted writes in {store.tmp_dir}")
            elif leftovers:
                problems.append(f"{leftovers} temporary files from interrupted writes in {store.tmp_dir}: "
                                "run `layerlab fsck --repair` to remove them")
        elif on_note is not None:
            on_note(f"temporary files in {store.tmp_dir} not checked because a build, pull, push, commit or load "
                    "is in progress: run fsck again when it ends")

    from layerlab.engine.control import check_containers

    problems += check_containers(engine, repair=repair)

    # Addresses, NAT rules, veths and bridges that a killed launcher left; the check
    # needs pyroute2 and iptables, so a store that never used a bridge network skips it.
    if os.path.isdir(os.path.join(engine.root, "networks")):
        from layerlab.engine.network import manage, network_store

        problems += manage.repair(network_store(engine), dry_run=not repair)
    return problems


def host_info(engine) -> dict[str, str]:
    from layerlab.engine.features import rootless_report

    info = {
        "Root": engine.root,
        "Rootless": str(engine.rootless).lower(),
        "Storage driver": "overlay",
        "Kernel": os.uname().release,
    }
    info.update(rootless_report(engine))
    return info


def _descriptor_blobs(engine, descriptor) -> list[str]:
    if not engine.store.has_blob(descriptor.digest):
        return [descriptor.digest]
    image = load_image(engine.store, descriptor.digest)
    return [image.id] + [layer.digest for layer in image.layers]


def _image_name(descriptor) -> str:
    """Return the tag of an index entry, or its image ID for an untagged or cache entry."""
    return (descriptor.annotations.get(ANNOTATION_REF_NAME) or descriptor.annotations.get(ANNOTATION_IMAGE_ID)
            or descriptor.digest)


def _file_size(path: str) -> int:
    try:
        return os.lstat(path).st_size
    except FileNotFoundError:
        return 0


def _hash_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as blob:
        while chunk := blob.read(HASH_BUFFER):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()
