"""`--filter key=value` for `ps` and `images`, with Docker's keys and matching rules.

Values given for one key are alternatives, so any one may match. Different
keys must all match, as in Docker.
"""

from __future__ import annotations

import fnmatch
import re

from layerlab.engine.errors import InvalidArgumentError, NotFoundError
from layerlab.engine.reference import Reference

CONTAINER_FILTERS = ("status", "name", "id", "ancestor", "label", "exited")
IMAGE_FILTERS = ("dangling", "reference", "label")
CONTAINER_STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def parse_filters(entries: list[str], allowed: tuple[str, ...]) -> dict[str, list[str]]:
    """Parse `--filter` flags into {key: [values]}. An unknown key raises InvalidArgumentError."""
    filters: dict[str, list[str]] = {}
    for entry in entries or []:
        key, has_value, value = entry.partition("=")
        key = key.strip().lower()
        if not has_value:
            raise InvalidArgumentError(f"bad format of filter (expected name=value): {entry!r}")
        if key not in allowed:
            raise InvalidArgumentError(f"invalid filter '{key}': use one of {', '.join(allowed)}")
        filters.setdefault(key, []).append(value)

    for status in filters.get("status", []):
        if status not in CONTAINER_STATUSES:
            raise InvalidArgumentError(
                f"invalid filter 'status={status}': use one of {', '.join(CONTAINER_STATUSES)}")
    for code in filters.get("exited", []):
        if not code.lstrip("-").isdigit():
            raise InvalidArgumentError(f"invalid filter 'exited={code}': the exit code must be a number")
    for value in filters.get("dangling", []):
        if value.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgumentError(f"invalid filter 'dangling={value}': use true or false")
    return filters


def labels_match(labels: dict[str, str], expected: list[str]) -> bool:
    """Check `label=key` and `label=key=value` filters; every one must match, as in Docker."""
    for entry in expected:
        key, has_value, value = entry.partition("=")
        if key not in labels or (has_value and labels[key] != value):
            return False
    return True


def container_status(record) -> str:
    """Return the container's state as the `status` filter and `{{.State}}` name it."""
    if record.state.status == "running" and getattr(record.state, "paused", False):
        return "paused"
    return record.state.status


def container_matches(engine, record, filters: dict[str, list[str]], labels: dict[str, str],
                      ancestor_ids: set[str] | None = None) -> bool:
    """Check one refreshed container record against parsed `ps` filters.

    `ancestor_ids` is ancestor_image_ids() of the `ancestor` values, computed
    here when the caller passes None.
    """
    if "status" in filters and container_status(record) not in filters["status"]:
        return False
    if "name" in filters and not any(re.search(pattern, record.name) for pattern in filters["name"]):
        return False
    if "id" in filters and not any(record.id.startswith(prefix) for prefix in filters["id"]):
        return False
    if "exited" in filters:
        if record.state.status != "exited" or str(record.state.exit_code) not in filters["exited"]:
            return False
    if "label" in filters and not labels_match(labels, filters["label"]):
        return False
    if "ancestor" in filters:
        if ancestor_ids is None:
            ancestor_ids = ancestor_image_ids(engine, filters["ancestor"])
        if record.image_id not in ancestor_ids:
            return False
    return True


def ancestor_image_ids(engine, names: list[str]) -> set[str]:
    """Return the IDs of the images that `names` resolve to and of every image built on top of one.

    As in Docker 20.10, an image is built on top of another when its chain
    of recorded parents, which `commit` and `build` write, reaches it. Sharing
    layers is not enough, so an image with no recorded parent, such as a
    pulled one, matches only itself. A name that resolves to no image
    matches nothing, and the name a container was created with is not
    compared, so a tag that moved to another image no longer matches it.
    """
    matched = set()
    for name in names:
        try:
            matched.add(engine.image(name).id)
        except (NotFoundError, InvalidArgumentError):
            continue
    if not matched:
        return matched

    parents = engine.images.parent_links()
    for image_id in parents:
        chain = []
        current = image_id
        while current is not None and current not in matched and current not in chain:
            chain.append(current)
            current = parents.get(current)
        if current in matched:
            matched.update(chain)
    return matched


def image_matches(entry, labels: dict[str, str], filters: dict[str, list[str]]) -> bool:
    """Check one `images` row (an ImageEntry) against parsed image filters."""
    if "dangling" in filters:
        dangling = entry.reference is None
        if any((value.lower() in ("true", "1")) != dangling for value in filters["dangling"]):
            return False
    if "reference" in filters:
        if entry.reference is None or not any(_reference_matches(entry.reference, p) for p in filters["reference"]):
            return False
    if "label" in filters and not labels_match(labels, filters["label"]):
        return False
    return True


def _reference_matches(reference: Reference, pattern: str) -> bool:
    # Docker matches the pattern with path.Match against the familiar name,
    # and against name:tag when the pattern has a tag.
    name = reference.familiar_name
    candidates = [name, str(reference).removesuffix(":" + (reference.tag or ""))]
    if ":" in pattern.rsplit("/", 1)[-1]:
        candidates = [f"{name}:{reference.tag}", reference.familiar]
    return any(_path_match(pattern, candidate) for candidate in candidates)


def _path_match(pattern: str, name: str) -> bool:
    # path.Match's `*` does not cross a `/`, unlike fnmatch's.
    pattern_parts = pattern.split("/")
    name_parts = name.split("/")
    if len(pattern_parts) != len(name_parts):
        return False
    return all(fnmatch.fnmatchcase(part, want) for part, want in zip(name_parts, pattern_parts))
