"""`build --cache-from IMAGE`: Docker's classic builder semantics for cache sources.

With sources named, a step's local cache entry counts only when its image
is a source or an ancestor of one. Otherwise a step hits when a source's
history continues the parent's: the source's first rows and layers are the
parent's, and its next row was written by the same instruction
(`created_by`). The hit is then rebuilt from that row and, unless the row is
an empty layer, the source's next layer, without running anything. This
matches moby's image/cache package (Docker 20.10).
"""

from __future__ import annotations

from layerlab.engine.errors import NotFoundError
from layerlab.engine.image import Image


class CacheSources:
    """The images named by --cache-from and the IDs of their recorded ancestors."""

    def __init__(self, engine, names: list[str]):
        self.engine = engine
        self.targets: list[Image] = []
        self.chain_ids: set[str] = set()
        for name in names:
            try:
                image = engine.images.resolve(name)
            except NotFoundError:
                # Docker's classic builder skips a --cache-from image it cannot find, and so does layerlab.
                continue
            self.targets.append(image)
            self.chain_ids |= self._ancestors(image.id)

    def _ancestors(self, image_id: str) -> set[str]:
        found = set()
        current = image_id
        while current and current not in found:
            found.add(current)
            current = self.engine.images.parent_of(current)
        return found

    def allows(self, image_id: str) -> bool:
        return image_id in self.chain_ids

    def restore(self, run, state, step) -> Image | None:
        """Return an image for `step` rebuilt from a source whose history continues the parent's, or None."""
        parent = state.image
        parent_history = parent.config.get("history", []) if parent else []
        parent_layers = parent.diff_ids if parent else []
        for target in self.targets:
            history = target.config.get("history", [])
            if len(history) <= len(parent_history) or history[: len(parent_history)] != parent_history:
                continue
            if target.diff_ids[: len(parent_layers)] != parent_layers:
                continue
            row = history[len(parent_history)]
            if row.get("created_by") != step.created_by:
                continue
            if len(history) == len(parent_history) + 1:
                return target
            # Stay on this source from now on, as moby does, so the chain cannot jump between sources.
            self.targets = [target]
            return self._rebuild(run, state, step, target, row, len(parent_layers))
        return None

    def _rebuild(self, run, state, step, target: Image, row: dict, layer_index: int) -> Image:
        draft = state.draft()
        if step.change is not None:
            step.change(draft)
        draft.config.setdefault("history", []).append(dict(row))
        draft.config["created"] = row.get("created", draft.config.get("created"))
        if not row.get("empty_layer"):
            layer = target.layers[layer_index]
            draft.add_layer(layer.digest, layer.size)
        return run.write(draft)
