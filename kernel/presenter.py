"""Show an engine command's output in a notebook cell.

Text goes to the cell's stdout and stderr streams as it comes, so a build's
progress is live. Views become widgets, each displayed once in its final
form, because nbval compares the first display of an output.
"""

from __future__ import annotations

import logging
import sys

from IPython.display import display

from layerlab.engine.build import events
from layerlab.engine.cli.presenter import build_event_text
from layerlab.engine.views import BuildSummary, StepRecord
from layerlab.kernel.stdio import container_pipes
from layerlab.kernel.widgets import widget_for

log = logging.getLogger(__name__)


class NotebookPresenter:
    """The presenter the magics hand to the engine's CLI."""

    def __init__(self):
        self.steps: list[StepRecord] = []

        # The build widget waits until the command ends or shows another
        # view, because the engine may still show its own BuildSummary.
        self.pending_summary: BuildSummary | None = None

    def write(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def error(self, text: str) -> None:
        if text and not text.endswith("\n"):
            text += "\n"
        sys.stderr.write(text)
        sys.stderr.flush()

    def show(self, view) -> None:
        if isinstance(view, BuildSummary):
            self.pending_summary = view
            return

        self.flush_build()
        self.display_view(view)

    def build_event(self, event) -> None:
        text = build_event_text(event)
        if text:
            self.write(text)

        handler = self.EVENT_HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)

    def container_stdio(self):
        self.flush_build()
        return container_pipes(sys.stdout, sys.stderr)

    def close(self) -> None:
        """Display what is still pending; the magics call this after every command."""
        self.flush_build()
        sys.stdout.flush()
        sys.stderr.flush()

    def flush_build(self) -> None:
        if self.pending_summary is None:
            return
        summary, self.pending_summary = self.pending_summary, None
        self.display_view(summary)

    def display_view(self, view) -> None:
        # Streams go first so the widget lands below the text that led to it.
        sys.stdout.flush()
        sys.stderr.flush()

        widget = widget_for(view)
        if widget is None:
            self.write(view.text())
        else:
            display(widget)

    def _record_step(self, event: events.StepDone) -> None:
        self.steps.append(StepRecord(
            index=event.index,
            instruction=event.instruction,
            cached=event.cached,
            seconds=event.seconds,
            layer_size=event.layer_size,
            image_id=event.image_id,
            cache_miss_reason=event.cache_miss_reason,
        ))

    def _finish_build(self, event: events.BuildDone) -> None:
        self.pending_summary = BuildSummary(
            image_id=event.image_id, tags=list(event.tags), steps=self.steps, seconds=event.seconds,
        )
        self.steps = []

        # TODO: the layer-stack widget appears only when the engine shows a
        # LayerStackView after a build; the kernel does not build one itself.

    EVENT_HANDLERS = {
        events.StepDone: _record_step,
        events.BuildDone: _finish_build,
    }
