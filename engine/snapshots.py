"""Snapshots: each layer unpacked once, read-only, keyed by its chain ID.

`snapshots/<chain-id hex>/fs` holds the layer's files with overlayfs
whiteouts, ready to be a lower directory of an overlay mount, as
containerd's overlay snapshotter keeps them. A layer is unpacked into a
temporary directory and renamed into place, so a crash never leaves a
half-unpacked snapshot under a chain ID.
"""

from __future__ import annotations

import logging
import os
import tempfile

from layerlab.engine.digest import hex_part
from layerlab.engine.image import Image
from layerlab.engine.locking import file_lock
from layerlab.engine.rootless import extract_layer_as_root, remove_tree
from layerlab.engine.store import Store

log = logging.getLogger(__name__)


class Snapshots:
    """The `snapshots/` folder of a store."""

    def __init__(self, store: Store, *, userns: bool = False):
        self.store = store
        self.root = os.path.join(store.root, "snapshots")
        self.userns = userns
        os.makedirs(self.root, exist_ok=True)

    def path(self, chain_id: str) -> str:
        return os.path.join(self.root, hex_part(chain_id), "fs")

    def exists(self, chain_id: str) -> bool:
        return os.path.isdir(self.path(chain_id))

    def lowerdirs(self, image: Image) -> list[str]:
        """Unpack whatever layers of `image` are missing; return their directories, top layer first."""
        chain = image.chain_ids
        # fsck --repair and system prune delete the staging folders of unpacks in progress otherwise.
        with self.store.gc_shared():
            for chain_id, layer in zip(chain, image.layers):
                if not self.exists(chain_id):
                    self._unpack(chain_id, layer.digest)
        return [self.path(chain_id) for chain_id in reversed(chain)]

    def adopt(self, chain_id: str, directory: str) -> None:
        """Move `directory`, a finished upper dir that holds exactly this layer, into place as the snapshot."""
        target = os.path.dirname(self.path(chain_id))
        with self.store.gc_shared(), file_lock(self._lock_path(chain_id)):
            if self.exists(chain_id):
                remove_tree(directory)
                return
            staging = tempfile.mkdtemp(prefix=".adopt-", dir=self.root)
            os.rename(directory, os.path.join(staging, "fs"))
            os.rename(staging, target)

    def remove(self, chain_id: str) -> None:
        target = os.path.dirname(self.path(chain_id))
        with file_lock(self._lock_path(chain_id)):
            remove_tree(target)

    def chain_ids(self) -> list[str]:
        return [f"sha256:{name}" for name in os.listdir(self.root) if not name.startswith(".")]

    def remove_partial(self) -> int:
        """Delete staging folders that a crash left behind; return how many."""
        removed = 0
        for name in os.listdir(self.root):
            if name.startswith("."):
                remove_tree(os.path.join(self.root, name))
                removed += 1
        return removed

    def _unpack(self, chain_id: str, layer_digest: str) -> None:
        with file_lock(self._lock_path(chain_id)):
            if self.exists(chain_id):
                return
            log.debug("unpacking layer %s as snapshot %s", layer_digest, chain_id)
            staging = tempfile.mkdtemp(prefix=".unpack-", dir=self.root)
            try:
                fs = os.path.join(staging, "fs")
                os.mkdir(fs, 0o755)
                with self.store.open_blob(layer_digest) as blob:
                    # As an ordinary user this runs in a user namespace, so
                    # the files get the owners that the layer records.
                    extract_layer_as_root(blob, fs, userns=self.userns)
                os.rename(staging, os.path.dirname(self.path(chain_id)))
            except BaseException:
                remove_tree(staging)
                raise

    def _lock_path(self, chain_id: str) -> str:
        return os.path.join(self.store.lock_dir, f"snapshot-{hex_part(chain_id)}.lock")
