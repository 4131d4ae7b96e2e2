"""Widgets for the engine's views, each with Docker's terminal text as `text/plain`.

nbval compares only `text/plain`, and plain frontends and text exports show
only that, so every widget's mime bundle carries the view's `text()` next to
the widget view and an HTML fallback. A widget is drawn once, in its final
form: nbval compares the first display of an output and ignores updates.
"""

from __future__ import annotations

import html
import logging

import ipywidgets

from layerlab.engine.digest import short_id
from layerlab.engine.humanize import ellipsis, human_size, time_ago
from layerlab.engine.views import (
    BuildSummary,
    ContainersView,
    DiffView,
    HistoryView,
    ImagesView,
    LayerStackView,
)

log = logging.getLogger(__name__)

STYLE = """<style>
.layerlab-table { border-collapse: collapse; font-family: monospace; font-size: 12px; }
.layerlab-table th { text-align: left; padding: 2px 12px 2px 0; border-bottom: 1px solid #999; }
.layerlab-table td { padding: 2px 12px 2px 0; vertical-align: top; }
.layerlab-cached td { color: #2e7d32; }
.layerlab-badge { font-weight: bold; }
.layerlab-stack { display: flex; flex-direction: column; font-family: monospace; font-size: 12px; width: 48em; }
.layerlab-layer { border: 1px solid #555; border-radius: 3px; margin: 1px 0; padding: 3px 6px; background: #e3f2fd; }
.layerlab-layer.layerlab-cached { background: #e8f5e9; border-style: dashed; }
.layerlab-title { font-weight: bold; margin-bottom: 3px; }
.layerlab-diff { font-family: monospace; font-size: 12px; }
.layerlab-diff-A { color: #2e7d32; }
.layerlab-diff-C { color: #ef6c00; }
.layerlab-diff-D { color: #c62828; }
</style>"""


class ViewWidget(ipywidgets.HTML):
    """An HTML widget that draws one engine view and shows `view.text()` as plain text."""

    def __init__(self, view, **kwargs):
        self.view = view
        super().__init__(value=STYLE + self.render_html(), **kwargs)

    def render_html(self) -> str:
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = self.view.text()
        bundle["text/html"] = self.value
        return bundle


class BuildWidget(ViewWidget):
    """One row per build step: CACHED or RAN, time, layer size, instruction."""

    def render_html(self) -> str:
        summary: BuildSummary = self.view
        rows = []
        for step in summary.steps:
            result = "CACHED" if step.cached else "RAN"
            layer = human_size(step.layer_size) if step.layer_size is not None else "-"
            cells = [str(step.index), f'<span class="layerlab-badge">{result}</span>',
                     f"{step.seconds:.2f}s", layer, html.escape(step.instruction)]
            row_class = "layerlab-cached" if step.cached else ""
            title = html.escape(step.cache_miss_reason, quote=True)
            rows.append(_html_row(cells, row_class=row_class, title=title))

        tags = ", ".join(summary.tags) or "untagged"
        title = f"Built {html.escape(short_id(summary.image_id))} ({html.escape(tags)}) in {summary.seconds:.2f}s"
        header = ["STEP", "RESULT", "TIME", "LAYER", "INSTRUCTION"]
        return f'<div class="layerlab-title">{title}</div>' + _html_table(header, rows)


class LayerStackWidget(ViewWidget):
    """An image's layers as boxes, the base at the bottom; cached layers dashed."""

    def render_html(self) -> str:
        stack: LayerStackView = self.view
        boxes = []
        for layer in reversed(stack.layers):
            box_class = "layerlab-layer layerlab-cached" if layer.cached else "layerlab-layer"
            cached = " (cached)" if layer.cached else ""
            boxes.append(
                f'<div class="{box_class}" title="{html.escape(layer.diff_id, quote=True)}">'
                f"<strong>{html.escape(human_size(layer.size))}</strong>{cached} "
                f"{html.escape(ellipsis(layer.created_by, 80))}</div>"
            )

        title = f"{html.escape(stack.image)} ({html.escape(short_id(stack.image_id))})"
        return f'<div class="layerlab-stack"><div class="layerlab-title">{title}</div>{"".join(boxes)}</div>'


class DiffWidget(ViewWidget):
    """`docker diff` lines coloured by kind: added, changed, deleted."""

    def render_html(self) -> str:
        diff: DiffView = self.view
        lines = [
            f'<div class="layerlab-diff-{html.escape(change.kind)}">{html.escape(change.kind)} '
            f"{html.escape(change.path)}</div>"
            for change in diff.changes
        ]
        return f'<div class="layerlab-diff">{"".join(lines)}</div>'


class ImagesWidget(ViewWidget):
    """`docker images` as an HTML table."""

    def render_html(self) -> str:
        images: ImagesView = self.view
        header = ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
        rows = [
            _html_row([row.repository, row.tag, row.image_id if images.no_trunc else short_id(row.image_id),
                       time_ago(row.created), human_size(row.size)], escape=True)
            for row in images.rows
        ]
        return _html_table(header, rows)


class ContainersWidget(ViewWidget):
    """`docker ps` as an HTML table."""

    def render_html(self) -> str:
        containers: ContainersView = self.view
        header = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
        rows = []
        for row in containers.rows:
            container_id = row.container_id if containers.no_trunc else row.container_id[:12]
            command = row.command if containers.no_trunc else ellipsis(row.command, 20)
            cells = [container_id, row.image, f'"{command}"', time_ago(row.created),
                     row.status, row.ports, row.names]
            rows.append(_html_row(cells, escape=True))
        return _html_table(header, rows)


class HistoryWidget(ViewWidget):
    """`docker history` as an HTML table."""

    def render_html(self) -> str:
        history: HistoryView = self.view
        header = ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
        rows = []
        for row in history.rows:
            image_id = "<missing>" if row.image_id is None else (
                row.image_id if history.no_trunc else short_id(row.image_id))
            created = time_ago(row.created) if row.created else "N/A"
            created_by = row.created_by if history.no_trunc else ellipsis(row.created_by, 45)
            size = human_size(row.size) if history.human else str(row.size)
            rows.append(_html_row([image_id, created, created_by, size, row.comment], escape=True))
        return _html_table(header, rows)


# Views whose quiet form is a bare list of IDs are shown as text only.
WIDGET_CLASSES = {
    BuildSummary: BuildWidget,
    LayerStackView: LayerStackWidget,
    DiffView: DiffWidget,
    ImagesView: ImagesWidget,
    ContainersView: ContainersWidget,
    HistoryView: HistoryWidget,
}


def widget_for(view) -> ViewWidget | None:
    """Return the widget that draws `view`, or None for a view drawn as text only."""
    if getattr(view, "quiet", False):
        return None

    widget_class = WIDGET_CLASSES.get(type(view))
    if widget_class is None:
        log.debug("no widget for %s; showing its text", type(view).__name__)
        return None
    return widget_class(view)


def _html_row(cells: list[str], *, row_class: str = "", title: str = "", escape: bool = False) -> str:
    if escape:
        cells = [html.escape(cell) for cell in cells]
    attributes = f' class="{row_class}"' if row_class else ""
    if title:
        attributes += f' title="{title}"'
    return f"<tr{attributes}>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _html_table(header: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name in header)
    return f'<table class="layerlab-table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
