"""Per-step records that let a cache miss say what changed since the last build.

After each step the builder stores what the step's cache key was made of:
the parent image, the instruction text, the build args a RUN saw and the
digest of each file a COPY or ADD read. The record is keyed by the context
folder, the Dockerfile and the step's index, and lives in the store's
`build-records/` folder as a small JSON file. Losing it only makes the
explanation vaguer; the cache itself never reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

MAX_NAMED_FILES = 3


def step_key(context_root: str, dockerfile: str, index: int) -> str:
    return hashlib.sha256(f"{context_root}\0{dockerfile}\0{index}".encode()).hexdigest()[:32]


def load(folder: str, key: str) -> dict | None:
    try:
        with open(os.path.join(folder, key + ".json"), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def save(folder: str, key: str, record: dict) -> None:
    os.makedirs(folder, exist_ok=True)
    # Write and rename, so a concurrent build never reads half a record.
    fd, temporary = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(record, handle, sort_keys=True)
    os.replace(temporary, os.path.join(folder, key + ".json"))


def explain_miss(previous: dict | None, current: dict) -> str:
    """Return why a step missed the cache, comparing its record with the previous build's."""
    if previous is None:
        return "no earlier build of this step"
    if previous.get("instruction") != current.get("instruction"):
        return f"instruction changed (was: {_one_line(previous.get('instruction', ''))})"
    if previous.get("parent") != current.get("parent"):
        return "parent changed: the image before this step is not the one the last build used"
    changed_args = _changed_keys(previous.get("args") or {}, current.get("args") or {})
    if changed_args:
        return "build arg changed: " + ", ".join(changed_args)
    if previous.get("files") is not None or current.get("files") is not None:
        return _explain_files(previous.get("files") or {}, current.get("files") or {})
    return "no earlier build ran this instruction on this parent"


def _explain_files(before: dict[str, str], after: dict[str, str]) -> str:
    parts = []
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    content, mode = [], []
    for name in sorted(set(before) & set(after)):
        old_mode, _, old_digest = before[name].partition(":")
        new_mode, _, new_digest = after[name].partition(":")
        if old_digest != new_digest:
            content.append(name)
        elif old_mode != new_mode:
            mode.append(f"{name} ({old_mode} -> {new_mode})")
    for label, names in (("content changed", content), ("mode changed", mode), ("added", added),
                         ("removed", removed)):
        if names:
            shown = ", ".join(names[:MAX_NAMED_FILES]) + (" ..." if len(names) > MAX_NAMED_FILES else "")
            parts.append(f"{label}: {shown}")
    return "; ".join(parts) if parts else "source files changed (owner or options)"


def _changed_keys(before: dict, after: dict) -> list[str]:
    changed = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            changed.append(f"{key} ({before.get(key, 'unset')} -> {after.get(key, 'unset')})")
    return changed


def _one_line(text: str) -> str:
    return " ".join(text.split())[:80]
