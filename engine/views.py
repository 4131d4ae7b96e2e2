"""Results of the engine's read commands, with the text Docker prints for them.

Each view contains typed rows (for widgets and scripts) and renders itself as
the table Docker's CLI prints (`text()`), which the CLI shows as it is and
the kernel uses as a widget's `text/plain` form.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from layerlab.engine.digest import short_id
from layerlab.engine.humanize import ellipsis, human_size, table, time_ago


@dataclass
class ImageRow:
    repository: str
    tag: str
    image_id: str
    created: datetime.datetime
    size: int
    digest: str = "<none>"  # the manifest digest a registry gave at pull or push


@dataclass
class ImagesView:
    rows: list[ImageRow]
    quiet: bool = False
    no_trunc: bool = False
    digests: bool = False  # `images --digests`: add the DIGEST column after TAG

    def text(self) -> str:
        if self.quiet:
            ids = []
            for row in self.rows:
                image_id = row.image_id if self.no_trunc else short_id(row.image_id)
                if image_id not in ids:
                    ids.append(image_id)
            return "".join(f"{image_id}\n" for image_id in ids)
        headers = ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
        body = [
            [row.repository, row.tag, row.image_id if self.no_trunc else short_id(row.image_id),
             time_ago(row.created), human_size(row.size)]
            for row in self.rows
        ]
        if self.digests:
            headers.insert(2, "DIGEST")
            for cells, row in zip(body, self.rows):
                cells.insert(2, row.digest)
        return table(headers, body)


@dataclass
class ContainerRow:
    container_id: str
    image: str
    command: str
    created: datetime.datetime
    status: str
    ports: str
    names: str


@dataclass
class ContainersView:
    rows: list[ContainerRow]
    quiet: bool = False
    no_trunc: bool = False

    def text(self) -> str:
        if self.quiet:
            return "".join(f"{self._id(row)}\n" for row in self.rows)
        body = [
            [self._id(row), row.image, self._command(row), time_ago(row.created), row.status, row.ports, row.names]
            for row in self.rows
        ]
        return table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], body)

    def _id(self, row: ContainerRow) -> str:
        return row.container_id if self.no_trunc else row.container_id[:12]

    def _command(self, row: ContainerRow) -> str:
        command = row.command if self.no_trunc else ellipsis(row.command, 20)
        return f'"{command}"'


@dataclass
class HistoryRow:
    image_id: str | None
    created: datetime.datetime | None
    created_by: str
    size: int
    comment: str


@dataclass
class HistoryView:
    rows: list[HistoryRow]
    quiet: bool = False
    no_trunc: bool = False
    human: bool = True

    def text(self) -> str:
        if self.quiet:
            return "".join(f"{self._id(row)}\n" for row in self.rows)
        body = [
            [self._id(row), time_ago(row.created) if row.created else "N/A",
             row.created_by if self.no_trunc else ellipsis(row.created_by, 45),
             human_size(row.size) if self.human else str(row.size), row.comment]
            for row in self.rows
        ]
        return table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], body)

    def _id(self, row: HistoryRow) -> str:
        if row.image_id is None:
            return "<missing>"
        return row.image_id if self.no_trunc else short_id(row.image_id)


@dataclass
class Change:
    kind: str
    path: str


@dataclass
class DiffView:
    changes: list[Change]

    def text(self) -> str:
        return "".join(f"{change.kind} {change.path}\n" for change in self.changes)


@dataclass
class LayerRow:
    diff_id: str
    size: int
    created_by: str
    cached: bool | None = None


@dataclass
class LayerStackView:
    """An image's layers, bottom first, for the layer-stack widget."""

    image: str
    image_id: str
    layers: list[LayerRow] = field(default_factory=list)

    def text(self) -> str:
        body = [
            [short_id(layer.diff_id), human_size(layer.size), ellipsis(layer.created_by, 60)]
            for layer in reversed(self.layers)
        ]
        return f"{self.image} ({short_id(self.image_id)})\n" + table(["LAYER", "SIZE", "CREATED BY"], body)


@dataclass
class StepRecord:
    index: int
    instruction: str
    cached: bool
    seconds: float
    layer_size: int | None
    image_id: str
    cache_miss_reason: str = ""


@dataclass
class BuildSummary:
    image_id: str
    tags: list[str]
    steps: list[StepRecord]
    seconds: float

    def text(self) -> str:
        body = [
            [str(step.index), "CACHED" if step.cached else "RAN", f"{step.seconds:.2f}s",
             human_size(step.layer_size) if step.layer_size is not None else "-", ellipsis(step.instruction, 50)]
            for step in self.steps
        ]
        return table(["STEP", "RESULT", "TIME", "LAYER", "INSTRUCTION"], body)
