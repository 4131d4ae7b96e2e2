"""`container prune`, `image prune`, `builder prune`, `system prune` and `system df`, with Docker's output.

Removing names from index.json frees nothing by itself. `collect_garbage`
then deletes every blob that no descriptor reaches and every snapshot that
no image or container uses, and reports the bytes freed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from layerlab.engine.humanize import human_size, table
from layerlab.engine.image import load_image
from layerlab.engine.listing import tree_size
from layerlab.engine.maintenance import leftovers_size, referenced_blobs, remove_leftovers
from layerlab.engine.store import ANNOTATION_CACHE_KEY, ANNOTATION_IMAGE_ID, ANNOTATION_REF_NAME, ANNOTATION_UNTAGGED

log = logging.getLogger(__name__)


@dataclass
class PruneReport:
    """The containers, networks, images and cache entries that a prune removed, and the bytes freed."""

    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # "untagged: ref" and "deleted: sha256:..." lines
    build_cache: list[str] = field(default_factory=list)
    reclaimed: int = 0

    def text(self) -> str:
        sections = []
        # Docker 20.10's `system prune` prints its sections in this order.
        for title, lines in (("Deleted Containers:", self.containers), ("Deleted Networks:", self.networks),
                             ("Deleted Images:", self.images), ("Deleted build cache objects:", self.build_cache)):
            if lines:
                sections.append(title + "\n" + "".join(line + "\n" for line in lines))
        sections.append(f"Total reclaimed space: {human_size(self.reclaimed)}\n")
        return "\n".join(sections)


def prune_containers(engine, report: PruneReport) -> None:
    """Remove every container that is not running."""
    for record in engine.containers.list():
        engine._refresh_state(record)
        if record.state.status == "running":
            continue
        size = tree_size(record.upperdir)
        engine.containers.remove(record)
        report.containers.append(record.id)
        report.reclaimed += size


def prune_networks(engine, report: PruneReport) -> None:
    """Remove every user-defined network that no container uses, as `network prune` does."""
    from layerlab.engine.network import network_store
    from layerlab.engine.network.manage import networks_in_use, prune

    report.networks += prune(network_store(engine), networks_in_use(engine))


def _release_default_bridge(engine) -> None:
    # Not a network Docker would prune: the bridge and its rules go, and come back with the next container.
    from layerlab.engine.network import network_store
    from layerlab.engine.network.manage import release_default_bridge

    release_default_bridge(network_store(engine))


def prune_images(engine, report: PruneReport, *, all_images: bool = False) -> None:
    """Remove dangling images not used by a container; with all_images, every image no container uses."""
    used = {record.image_id for record in engine.containers.list()}
    doomed_ids: list[str] = []
    untagged_lines: list[str] = []

    def change(descriptors):
        remaining = []
        for descriptor in descriptors:
            annotations = descriptor.annotations
            image_id = annotations.get(ANNOTATION_IMAGE_ID)
            removable = image_id not in used and (
                ANNOTATION_UNTAGGED in annotations or (all_images and ANNOTATION_REF_NAME in annotations))
            if not removable:
                remaining.append(descriptor)
                continue
            if ANNOTATION_REF_NAME in annotations:
                from layerlab.engine.reference import Reference

                untagged_lines.append(f"untagged: {Reference.parse(annotations[ANNOTATION_REF_NAME]).familiar}")
            if image_id not in doomed_ids:
                doomed_ids.append(image_id)
        # An image stays while a name or untagged entry is left; cache entries alone do not keep it listed.
        return remaining

    engine.store.update_index(change)
    report.images += untagged_lines
    still_listed = {entry.image_id for entry in engine.images.entries()}
    report.images += [f"deleted: {image_id}" for image_id in doomed_ids if image_id not in still_listed]


def prune_build_cache(engine, report: PruneReport) -> None:
    """Remove every build cache entry."""
    removed: list[str] = []

    def change(descriptors):
        removed.extend(d.digest for d in descriptors if ANNOTATION_CACHE_KEY in d.annotations)
        return [d for d in descriptors if ANNOTATION_CACHE_KEY not in d.annotations]

    engine.store.update_index(change)
    report.build_cache += [digest.removeprefix("sha256:")[:25] for digest in removed]


def collect_garbage(engine) -> int:
    """Delete blobs that index.json no longer reaches and unused snapshots; return the bytes freed.

    The caller holds `Store.gc_exclusive`, so no build, pull or commit has
    written blobs that it has not named yet.
    """
    reached = referenced_blobs(engine)
    freed = 0
    for digest in list(engine.store.iter_blobs()):
        if digest not in reached:
            path = engine.store.blob_path(digest)
            freed += os.path.getsize(path)
            os.unlink(path)

    live_chains = set()
    for descriptor in engine.store.descriptors():
        live_chains.update(load_image(engine.store, descriptor.digest).chain_ids)
    used_paths = {path for record in engine.containers.list() for path in record.lowerdirs}
    for chain_id in engine.snapshots.chain_ids():
        if len(chain_id) != 71 or chain_id in live_chains:
            continue
        if engine.snapshots.path(chain_id) in used_paths:
            continue
        freed += tree_size(engine.snapshots.path(chain_id))
        engine.snapshots.remove(chain_id)
    return freed


def container_prune(engine) -> PruneReport:
    report = PruneReport()
    prune_containers(engine, report)
    return report


# Passed to on_wait when a prune waits for the gc lock.
WAITING_MESSAGE = "waiting for running builds to finish\n"


def image_prune(engine, *, all_images: bool = False, on_wait: Callable[[], None] | None = None) -> PruneReport:
    report = PruneReport()
    with engine.store.gc_exclusive(on_wait):
        prune_images(engine, report, all_images=all_images)
        report.reclaimed += collect_garbage(engine)
    return report


def builder_prune(engine, *, on_wait: Callable[[], None] | None = None) -> PruneReport:
    report = PruneReport()
    with engine.store.gc_exclusive(on_wait):
        prune_build_cache(engine, report)
        report.reclaimed += collect_garbage(engine)
    return report


def system_prune(engine, *, all_images: bool = False, on_wait: Callable[[], None] | None = None) -> PruneReport:
    """Remove stopped containers, unused networks, dangling (with all_images, unused) images, the build cache
    and temporary files.

    Waits (calling `on_wait` once) until no build, pull or commit is running.
    """
    report = PruneReport()
    with engine.store.gc_exclusive(on_wait):
        prune_containers(engine, report)
        prune_networks(engine, report)
        _release_default_bridge(engine)
        prune_images(engine, report, all_images=all_images)
        prune_build_cache(engine, report)
        report.reclaimed += collect_garbage(engine)
        report.reclaimed += remove_leftovers(engine)
    return report


def disk_usage(engine) -> str:
    """Return `system df`'s table: images, containers, local volumes and build cache."""
    records = engine.containers.list()
    for record in records:
        engine._refresh_state(record)
    used_images = {record.image_id for record in records}

    layer_sizes: dict[str, int] = {}
    image_layers: dict[str, set[str]] = {}
    for entry in engine.images.entries():
        if entry.image_id in image_layers:
            continue
        image = load_image(engine.store, entry.descriptor.digest)
        image_layers[entry.image_id] = {layer.digest for layer in image.layers}
        layer_sizes.update((layer.digest, layer.size) for layer in image.layers)
    active_layers = set().union(*(layers for image_id, layers in image_layers.items() if image_id in used_images))
    images_size = sum(layer_sizes.values())
    images_reclaimable = sum(size for digest, size in layer_sizes.items() if digest not in active_layers)

    container_sizes = {record.id: tree_size(record.upperdir) for record in records}
    running = [record for record in records if record.state.status == "running"]
    containers_size = sum(container_sizes.values())
    containers_reclaimable = containers_size - sum(container_sizes[record.id] for record in running)

    cache_entries = [d for d in engine.store.descriptors() if ANNOTATION_CACHE_KEY in d.annotations]
    listed_blobs = set(layer_sizes)
    cache_size = 0
    cache_layers: set[str] = set()
    for descriptor in cache_entries:
        for layer in load_image(engine.store, descriptor.digest).layers:
            if layer.digest not in listed_blobs and layer.digest not in cache_layers:
                cache_layers.add(layer.digest)
                cache_size += layer.size

    rows = [
        ["Images", str(len(image_layers)), str(len(used_images & set(image_layers))), human_size(images_size),
         _reclaimable(images_reclaimable, images_size)],
        ["Containers", str(len(records)), str(len(running)), human_size(containers_size),
         _reclaimable(containers_reclaimable, containers_size)],
        ["Local Volumes", "0", "0", "0B", "0B"],
        ["Build Cache", str(len(cache_entries)), "0", human_size(cache_size), human_size(cache_size)],
    ]
    text = table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], rows)
    # Not a Docker row: files that crashed or running writes keep in tmp/, which `system prune` removes.
    with engine.store.try_gc_exclusive() as idle:
        leftovers = leftovers_size(engine)
    if leftovers:
        state = "left by interrupted writes" if idle else "in use by a running build, pull or commit"
        text += f"\nTemporary files: {human_size(leftovers)} {state}, in {engine.store.tmp_dir}\n"
    return text


def _reclaimable(size: int, total: int) -> str:
    if total <= 0:
        return human_size(size)
    return f"{human_size(size)} ({int(100 * size / total)}%)"
