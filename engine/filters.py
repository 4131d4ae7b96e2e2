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


def container_matches(engine, record, filters: dict[str, list[str]], labels: dict[str, str]) -> bool:
    """Check one refreshed container record against parsed `ps` filters."""
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
    if "ancestor" in filters and not any(_is_ancestor(engine, name, record) for name in filters["ancestor"]):
        return False
    return True


def _is_ancestor(engine, name: str, record) -> bool:
    # TODO: Docker also matches containers of images built on top of `name`;
    # only the container's own image is compared here.
    if name == record.image:
        return True
    try:
        image_id = engine.image(name).id
    except (NotFoundError, InvalidArgumentError):
        return False
    return image_id == record.image_id


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
