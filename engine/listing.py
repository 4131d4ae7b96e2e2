"""Rows of `ps`, `images` and `history` as the fields of Docker's `--format` templates.

Each row is a dict keyed by Docker's field names (`ID`, `Names`,
`CreatedSince`, ...), so the same template renders here and in Docker.
The HEADERS dicts give the column title of each field for `table` formats.
"""

from __future__ import annotations

import datetime
import os

from layerlab.engine.digest import short_id
from layerlab.engine.errors import NotFoundError
from layerlab.engine.filters import ancestor_image_ids, container_matches, container_status, image_matches
from layerlab.engine.humanize import ellipsis, human_size, time_ago
from layerlab.engine.image import parse_rfc3339
from layerlab.engine.reference import Reference
from layerlab.engine.store import ANNOTATION_CACHE_KEY, ANNOTATION_IMAGE_ID

PS_HEADERS = {
    "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED", "Status": "STATUS", "Ports": "PORTS", "Names": "NAMES", "Labels": "LABELS",
    "Size": "SIZE", "State": "STATE", "Mounts": "MOUNTS", "Networks": "NETWORKS", "LocalVolumes": "LOCAL VOLUMES",
}
PS_TABLE = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"

IMAGES_HEADERS = {
    "Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT", "Size": "SIZE", "Digest": "DIGEST", "Containers": "CONTAINERS",
    "VirtualSize": "VIRTUAL SIZE", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE",
}

HISTORY_HEADERS = {
    "ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY",
    "Size": "SIZE", "Comment": "COMMENT",
}


def go_time(moment: datetime.datetime | None) -> str:
    """Format a time as Go's time.Time.String() does in UTC: `2024-05-01 12:34:56 +0000 UTC`."""
    if moment is None:
        return ""
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def container_labels(engine, record) -> dict[str, str]:
    """Return the container's labels: its image's, overridden by its own `labels` when it has them."""
    labels: dict[str, str] = {}
    try:
        labels.update(engine.image(record.image_id).settings.get("Labels") or {})
    except NotFoundError:
        pass
    labels.update(getattr(record, "labels", None) or {})
    return labels


def select_containers(engine, *, all: bool, filters: dict[str, list[str]], last: int = -1):
    """Return the refreshed records `ps` lists, newest first.

    As in Docker, a `status` filter or `-n` implies `--all`, and `-n N` keeps
    the N newest containers after filtering.
    """
    records = []
    show_all = all or last > 0 or "status" in filters or "exited" in filters
    ancestor_ids = ancestor_image_ids(engine, filters["ancestor"]) if "ancestor" in filters else None
    for record in engine.containers.list():
        engine._refresh_state(record)
        if not show_all and record.state.status != "running":
            continue
        if not container_matches(engine, record, filters, container_labels(engine, record), ancestor_ids):
            continue
        records.append(record)
    records.sort(key=lambda record: record.created, reverse=True)
    return records[:last] if last > 0 else records


def container_row(engine, record, *, no_trunc: bool = False, size: bool = False) -> dict:
    """Return the `ps --format` fields of one container."""
    labels = container_labels(engine, record)
    created = parse_rfc3339(record.created)
    ports = ""
    if (record.ports or record.exposed_ports) and record.state.status == "running":
        from layerlab.engine.network import ports_text

        ports = ports_text(record)
    command = record.command if no_trunc else ellipsis(record.command, 20)
    row = {
        "ID": record.id if no_trunc else record.id[:12],
        "Image": record.image,
        "Command": f'"{command}"',
        "CreatedAt": go_time(created),
        "RunningFor": time_ago(created),
        "Status": record.status_text(),
        "Ports": ports,
        "Names": record.name,
        "Labels": ",".join(f"{key}={value}" for key, value in sorted(labels.items())),
        "Label": lambda key: labels.get(key, ""),
        "State": container_status(record),
        "Mounts": "",
        "Networks": ",".join([record.network] + record.networks),
        "LocalVolumes": "0",
        "Size": "",
    }
    if size:
        writable = tree_size(record.upperdir)
        try:
            virtual = sum(layer.size for layer in engine.image(record.image_id).layers)
        except NotFoundError:
            virtual = 0
        row["Size"] = f"{human_size(writable)} (virtual {human_size(writable + virtual)})"
    return row


def tree_size(path: str) -> int:
    """Return the bytes in regular files under `path`, each hard-linked inode counted once."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def image_rows(engine, *, filters: dict[str, list[str]], all: bool = False, no_trunc: bool = False,
               repository: str | None = None) -> list[dict]:
    """Return the `images --format` fields of every listed image, newest first.

    `all` adds the intermediate images of builds (the build cache's steps),
    which `images -a` shows in Docker's classic builder.
    """
    entries = list(reversed(engine.images.entries()))
    listed_ids = {entry.image_id for entry in entries}
    if all and "dangling" not in filters and "reference" not in filters:
        entries += _intermediate_entries(engine, listed_ids)

    rows = []
    for entry in entries:
        image = engine.images.resolve(entry.image_id)
        labels = image.settings.get("Labels") or {}
        if not image_matches(entry, labels, filters):
            continue
        if entry.reference is None:
            repo, tag = _untagged_repository(engine, entry), "<none>"
        else:
            repo, tag = entry.reference.familiar_name, entry.reference.tag or "<none>"
        if repository and repo not in (repository, _familiar(repository)):
            continue
        created = parse_rfc3339(image.created) if image.created else datetime.datetime.fromtimestamp(
            0, datetime.timezone.utc)
        size = sum(layer.size for layer in image.layers)
        rows.append({
            "Repository": repo,
            "Tag": tag,
            "ID": image.id if no_trunc else short_id(image.id),
            "FullID": image.id,
            "CreatedSince": time_ago(created),
            "CreatedAt": go_time(created),
            "Created": created,
            "Size": human_size(size),
            "SizeBytes": size,
            "VirtualSize": human_size(size),
            "SharedSize": "N/A",
            "UniqueSize": "N/A",
            "Containers": "N/A",
            "Digest": _repository_digest(engine, entry),
        })
    rows.sort(key=lambda row: row["Created"], reverse=True)
    return rows


def _untagged_repository(engine, entry) -> str:
    """Return the repository of an untagged image that a pull by digest recorded, as Docker shows it, else `<none>`."""
    recorded = engine.images.repo_digests(entry.image_id)
    if not recorded:
        return "<none>"
    return Reference.parse(recorded[0]).familiar_name


def _repository_digest(engine, entry) -> str:
    """Return the digest a registry gave the image under the row's repository, or `<none>` as Docker prints."""
    recorded_digests = engine.images.repo_digests(entry.image_id)
    if entry.reference is None:
        return recorded_digests[0].partition("@")[2] if recorded_digests else "<none>"
    for recorded in recorded_digests:
        name, _, digest = recorded.partition("@")
        if name == entry.reference.name:
            return digest
    return "<none>"


def _intermediate_entries(engine, listed_ids: set[str]):
    from layerlab.engine.images import ImageEntry

    found = []
    for descriptor in engine.store.descriptors():
        image_id = descriptor.annotations.get(ANNOTATION_IMAGE_ID)
        if ANNOTATION_CACHE_KEY in descriptor.annotations and image_id and image_id not in listed_ids:
            listed_ids.add(image_id)
            found.append(ImageEntry(image_id, None, descriptor))
    return found


def _familiar(repository: str) -> str:
    from layerlab.engine.errors import InvalidArgumentError
    from layerlab.engine.reference import Reference

    try:
        return Reference.parse(repository).familiar_name
    except InvalidArgumentError:
        return repository


def history_rows(view) -> list[dict]:
    """Return the `history --format` fields of a HistoryView's rows."""
    rows = []
    for row in view.rows:
        if row.image_id is None:
            image_id = "<missing>"
        else:
            image_id = row.image_id if view.no_trunc else short_id(row.image_id)
        rows.append({
            "ID": image_id,
            "CreatedSince": time_ago(row.created) if row.created else "N/A",
            "CreatedAt": go_time(row.created),
            "CreatedBy": row.created_by if view.no_trunc else ellipsis(row.created_by, 45),
            "Size": human_size(row.size) if view.human else str(row.size),
            "Comment": row.comment,
        })
    return rows
