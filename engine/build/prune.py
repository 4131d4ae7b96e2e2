"""`builder prune`: remove the build cache's entries, RUN cache-mount folders and step records."""

from __future__ import annotations

import os
from dataclasses import dataclass

from layerlab.engine.rootless import remove_tree

CACHE_MOUNTS = "cache-mounts"
BUILD_RECORDS = "build-records"


@dataclass
class PruneReport:
    cache_entries: int
    cache_mounts: int
    step_records: int

    def text(self) -> str:
        return (f"Removed {self.cache_entries} build cache entries, {self.cache_mounts} cache mounts "
                f"and {self.step_records} step records\n")


def prune_build_cache(engine) -> PruneReport:
    """Remove everything a build keeps for later builds; images and their blobs stay until `system prune`."""
    entries = engine.images.prune_cache()
    mounts = _remove_children(os.path.join(engine.root, CACHE_MOUNTS))
    records = _remove_children(os.path.join(engine.root, BUILD_RECORDS))
    return PruneReport(entries, mounts, records)


def _remove_children(folder: str) -> int:
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            remove_tree(path)
        else:
            os.unlink(path)
    return len(names)
