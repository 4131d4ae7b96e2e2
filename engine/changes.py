"""Changes that a container's upper dir makes to its image, as `docker diff` lists them.

The rules follow Docker's overlay2 driver (moby `pkg/archive/changes.go`):

- a character device 0/0 is `D`;
- an opaque directory that exists in the lower layers is `D` (it was
  deleted and created again), and a new one is `A`;
- any other path is `C` when the lower layers have it and `A` otherwise,
  except a directory whose mode, size and mtime match the lower one, which
  overlayfs copied up only to reach something inside it;
- the parent of every `A` or `D` is `C`, unless it is reported already.

Paths start with `/` and come sorted by path, component by component, so
the output is stable; Docker prints them in walk order.
"""

import logging
import os
import stat
from dataclasses import dataclass

from layerlab.engine.errors import NotFoundError
from layerlab.engine.whiteout import is_opaque_dir, is_overlay_whiteout

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Change:
    """One line of `docker diff`: `kind` is "A" (added), "C" (changed) or "D" (deleted)."""

    kind: str
    path: str

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


def changes(upper_dir: str, lower_dirs: list[str]) -> list[Change]:
    """List the changes that `upper_dir` makes to `lower_dirs` (top layer first).

    `lower_dirs` are overlay-form directories (as `extract_layer` writes
    them), so their own whiteouts and opaque directories are honoured.
    """
    if not os.path.isdir(upper_dir):
        raise NotFoundError(f"upper directory {upper_dir} not found: give the container's upper dir")

    lower = _LowerView(lower_dirs)
    found: dict[str, str] = {}
    reported_dirs: set[str] = set()
    # Directories below an opaque upper directory hide every lower layer.
    opaque_roots: set[str] = set()

    stack = [""]
    while stack:
        directory = stack.pop()
        for name in _sorted_names(os.path.join(upper_dir, directory)):
            relative = f"{directory}/{name}" if directory else name
            path = os.path.join(upper_dir, relative)
            st = os.lstat(path)
            hidden = _under(relative, opaque_roots)

            kind = _classify(path, relative, st, lower, hidden, opaque_roots)
            if stat.S_ISDIR(st.st_mode):
                stack.append(relative)
            if kind is None:
                continue

            found[relative] = kind
            if stat.S_ISDIR(st.st_mode):
                reported_dirs.add(relative)
            if kind in ("A", "D"):
                _mark_parent(relative, found, reported_dirs)

    ordered = sorted(found.items(), key=lambda item: [os.fsencode(part) for part in item[0].split("/")])
    return [Change(kind, "/" + relative) for relative, kind in ordered]


def _classify(path, relative, st, lower, hidden, opaque_roots) -> str | None:
    """Return the change kind for one upper entry, or None for an unchanged directory."""
    if is_overlay_whiteout(st):
        return "D"

    below = None if hidden else lower.lookup(relative)
    if stat.S_ISDIR(st.st_mode) and is_opaque_dir(path):
        opaque_roots.add(relative)
        return "A" if below is None else "D"

    if below is None:
        return "A"
    if stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(below.st_mode) and _same_directory(st, below):
        return None
    return "C"


def _same_directory(upper: os.stat_result, lower: os.stat_result) -> bool:
    # The mtimes match when their nanoseconds do, or when one side kept whole
    # seconds only (a tar without PAX times), as Docker's sameFsTime decides.
    same_second = upper.st_mtime_ns // 10**9 == lower.st_mtime_ns // 10**9
    whole_second = upper.st_mtime_ns % 10**9 == 0 or lower.st_mtime_ns % 10**9 == 0
    same_mtime = upper.st_mtime_ns == lower.st_mtime_ns or (same_second and whole_second)
    return upper.st_mode == lower.st_mode and upper.st_size == lower.st_size and same_mtime


def _mark_parent(relative: str, found: dict[str, str], reported_dirs: set[str]) -> None:
    parent = relative.rpartition("/")[0]
    if parent and parent not in reported_dirs:
        found[parent] = "C"
        reported_dirs.add(parent)


def _under(relative: str, roots: set[str]) -> bool:
    parent = relative.rpartition("/")[0]
    while parent:
        if parent in roots:
            return True
        parent = parent.rpartition("/")[0]
    return False


def _sorted_names(directory: str) -> list[str]:
    with os.scandir(directory) as scan:
        return sorted((entry.name for entry in scan), key=os.fsencode)


class _LowerView:
    """Looks paths up in a stack of overlay-form layers as overlayfs merges them."""

    def __init__(self, layers: list[str]):
        self._layers = layers
        self._opaque: dict[str, bool] = {}

    def lookup(self, relative: str) -> os.stat_result | None:
        """Return the lstat of the merged lower entry at `relative`, or None when it is absent."""
        parts = relative.split("/")
        for layer in self._layers:
            found, blocks_lower = self._lookup_in_layer(layer, parts)
            if found is not None:
                return found
            if blocks_lower:
                return None
        return None

    def _lookup_in_layer(self, layer: str, parts: list[str]) -> tuple[os.stat_result | None, bool]:
        """Return the entry in one layer and whether this layer hides the layers below."""
        current = layer
        hides_below = False
        for index, part in enumerate(parts):
            current = os.path.join(current, part)
            try:
                st = os.lstat(current)
            except (FileNotFoundError, NotADirectoryError):
                return None, hides_below

            if is_overlay_whiteout(st):
                return None, True
            if index == len(parts) - 1:
                return st, True
            if not stat.S_ISDIR(st.st_mode):
                return None, True
            if self._is_opaque(current):
                hides_below = True
        return None, hides_below

    def _is_opaque(self, path: str) -> bool:
        cached = self._opaque.get(path)
        if cached is None:
            cached = is_opaque_dir(path)
            self._opaque[path] = cached
        return cached
