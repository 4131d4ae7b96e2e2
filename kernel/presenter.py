"""Show an engine command's output in a notebook cell.

Text goes to the cell's stdout and stderr streams as it comes, so a build's
progress is live. Views become widgets, each displayed once in its final
form, because nbval compares the first display of an output. The one live
widget, a pull's or push's progress, is displayed with no text for nbval to
compare (see `transfer_widget`).
"""

from __future__ import annotations

import logging
import sys

from IPython.display import display

from layerlab.engine.build import events
from layerlab.engine.cli.presenter import build_event_text
from layerlab.engine.registry.progress import LayerProgress, TransferDone, plain_text
from layerlab.engine.views import BuildSummary, StepRecord
from layerlab.kernel.stdio import container_pipes
from layerlab.kernel.transfer_widget import TransferWidget
from layerlab.kernel.widgets import widget_for

log = logging.getLogger(__name__)


class NotebookPresenter:
    """The presenter the magics hand to the engine's CLI."""

    def __init__(self):
        self.steps: list[StepRecord] = []
        self.step_stages: dict[int, int] = {}
        self.built_image: str | None = None

        # Whether each layer the final stage made came from the cache, in
        # order, to mark the top of the image's layer stack.
        self.final_layers_cached: list[bool] = []

        # The build widget waits until the command ends or shows another
        # view, because the engine may still show its own BuildSummary.
        self.pending_summary: BuildSummary | None = None

        # The live widget of the pull or push in progress, if any.
        self.transfer: TransferWidget | None = None
        self.transfer_displayed = False

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

    def transfer_event(self, event) -> None:
        """Stream a pull or push event's status lines and draw it in the transfer's live widget."""
        if self.transfer is None:
            self.transfer = TransferWidget()
            self.transfer_displayed = False

        # The widget appears with the first layer, below the transfer's first line.
        if not self.transfer_displayed and isinstance(event, LayerProgress):
            sys.stdout.flush()
            display(self.transfer.widget_view_bundle(), raw=True)
            self.transfer_displayed = True

        text = plain_text(event)
        if text:
            self.write(text)
        self.transfer.handle(event)
        if isinstance(event, TransferDone):
            self.transfer = None

    def build_finished(self, result) -> None:
        """Display the build widget, then the built image's layer stack; the CLI calls this after a build."""
        self.flush_build()
        if self.built_image is None:
            return

        stack = self._layer_stack(self.built_image)
        if stack is not None:
            self.display_view(stack)

    def container_stdio(self):
        self.flush_build()
        return container_pipes(sys.stdout, sys.stderr)

    def close(self) -> None:
        """Display what is still pending; the magics call this after every command."""
        self.flush_build()
        self.transfer = None
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

    def _layer_stack(self, image: str):
        from layerlab.engine.api import Engine
        from layerlab.engine.errors import LayerlabError

        try:
            stack = Engine().layer_stack(image)
        except LayerlabError as error:
            log.warning("failed to load the layer stack of %s: %s", image, error)
            return None

        # The final stage's layers are the top of the stack. The ones below
        # came from the base image, so this build neither cached nor ran them.
        built = stack.layers[len(stack.layers) - len(self.final_layers_cached):]
        for layer, cached in zip(built, self.final_layers_cached):
            layer.cached = cached
        return stack

    def _start_step(self, event: events.StepStarted) -> None:
        self.step_stages[event.index] = event.stage

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
        # The first tag titles the layer stack; an untagged build shows its ID.
        self.built_image = event.tags[0] if event.tags else event.image_id

        # The last step started belongs to the stage that became the image.
        final_stage = self.step_stages[max(self.step_stages)] if self.step_stages else 0
        self.final_layers_cached = [
            step.cached for step in self.steps
            if step.layer_size is not None and self.step_stages.get(step.index, 0) == final_stage
        ]
        self.steps = []

    EVENT_HANDLERS = {
        events.StepStarted: _start_step,
        events.StepDone: _record_step,
        events.BuildDone: _finish_build,
    }
