"""Records of the compressed blobs, per registry repository, that hold each uncompressed layer.

The store keeps layers uncompressed, so pushing one means compressing it,
and a gzip stream made here rarely matches the registry's bytes for a layer
pulled from there. Remembering the compressed digest that each pull and
push saw lets a later push of the same layer ask the registry (`HEAD`) or
mount it from a sibling repository instead of compressing it again, as
Docker's distribution metadata does. The records live in
`registry-blobs.json` in the store root, rewritten atomically under a lock.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass

from layerlab.engine.locking import file_lock
from layerlab.engine.store import Store

log = logging.getLogger(__name__)

# Enough for many repositories per layer, small enough to keep the file short.
MAX_RECORDS_PER_LAYER = 16


@dataclass(frozen=True)
class CompressedBlob:
    digest: str
    size: int
    media_type: str
    registry: str
    repository: str


class BlobInfo:
    def __init__(self, store: Store):
        self.store = store
        self.path = os.path.join(store.root, "registry-blobs.json")
        self.lock_path = os.path.join(store.lock_dir, "registry-blobs.lock")

    def _read(self) -> dict[str, list[dict]]:
        try:
            with open(self.path, encoding="utf-8") as records:
                return json.load(records)
        except FileNotFoundError:
            return {}
        except ValueError:
            log.warning("ignoring unreadable %s: it only speeds up pushes", self.path)
            return {}

    def known(self, diff_id: str, registry: str) -> list[CompressedBlob]:
        """Return the compressed blobs recorded for `diff_id` on `registry`, newest first."""
        records = self._read().get(diff_id, [])
        return [CompressedBlob(**record) for record in reversed(records) if record.get("registry") == registry]

    def remember(self, diff_id: str, blob: CompressedBlob) -> None:
        with file_lock(self.lock_path):
            document = self._read()
            records = [r for r in document.get(diff_id, []) if CompressedBlob(**r) != blob]
            records.append(asdict(blob))
            document[diff_id] = records[-MAX_RECORDS_PER_LAYER:]
            fd, tmp_path = tempfile.mkstemp(prefix=".registry-blobs-", dir=self.store.tmp_dir)
            with os.fdopen(fd, "w", encoding="utf-8") as tmp:
                json.dump(document, tmp)
            os.rename(tmp_path, self.path)
