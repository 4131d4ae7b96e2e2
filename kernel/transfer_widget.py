"""A live widget for pull and push: one row per layer with its state and a progress bar.

How this stays stable under nbval: nbval compares the first display of an
output and ignores later updates, while nbclient and JupyterLab save the
final state. So the widget is displayed as a raw bundle with only the
widget view, with no `text/plain` or `text/html`, and nbval, which skips
the widget-view key, compares nothing for it. The rows change through widget state alone. The
text record of the transfer is the status lines that the presenter streams
to stdout, the same lines as the terminal prints without a TTY, so
notebooks recorded before this widget existed still compare equal.
"""

from __future__ import annotations

import html

import ipywidgets

from layerlab.engine.humanize import human_size
from layerlab.engine.registry.progress import (
    LayerProgress,
    TransferDone,
    TransferEvent,
    TransferStarted,
    plain_text,
)

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

# Actions after which a layer needs nothing more: its bar is drawn full.
FINAL_ACTIONS = ("Pull complete", "Already exists", "Pushed", "Layer already exists", "Mounted from ")

LABEL_LAYOUT = ipywidgets.Layout(width="24em")
BAR_LAYOUT = ipywidgets.Layout(width="24em")


class LayerRow(ipywidgets.HBox):
    """One layer: `id: action`, a bar and the byte counts."""

    def __init__(self, layer: str):
        self.layer = layer
        self.label = ipywidgets.HTML(layout=LABEL_LAYOUT)
        self.bar = ipywidgets.IntProgress(value=0, min=0, max=1, layout=BAR_LAYOUT)
        self.counts = ipywidgets.HTML()
        super().__init__([self.label, self.bar, self.counts])

    def update(self, event: LayerProgress) -> None:
        self.label.value = f"<code>{html.escape(event.layer)}: {html.escape(event.action)}</code>"
        if event.current is not None:
            if event.total:
                self.bar.max = event.total
                self.bar.value = min(event.current, event.total)
                self.counts.value = html.escape(f"{human_size(event.current)}/{human_size(event.total)}")
            else:
                self.counts.value = html.escape(human_size(event.current))
        elif event.action.startswith(FINAL_ACTIONS):
            self.bar.value = self.bar.max
            self.bar.bar_style = "success"


class TransferWidget(ipywidgets.VBox):
    """The header line, one `LayerRow` per layer, and the closing lines of one pull or push."""

    def __init__(self):
        self.header = ipywidgets.HTML()
        self.rows: dict[str, LayerRow] = {}
        self.footer = ipywidgets.HTML()
        self.lines: list[str] = []
        super().__init__([self.header, self.footer])

    def handle(self, event: TransferEvent) -> None:
        self.lines.append(plain_text(event))
        match event:
            case TransferStarted(message=message):
                self.header.value = f"<code>{html.escape(message)}</code>"
            case LayerProgress(layer=layer):
                row = self.rows.get(layer)
                if row is None:
                    row = self.rows[layer] = LayerRow(layer)
                    self.children = (self.header, *self.rows.values(), self.footer)
                row.update(event)
            case TransferDone(lines=lines):
                self.footer.value = "<br>".join(f"<code>{html.escape(line)}</code>" for line in lines)

    def text(self) -> str:
        """Return the transfer's lines so far, as the terminal prints them without a TTY."""
        return "".join(self.lines)

    def widget_view_bundle(self) -> dict:
        """Return a mime bundle with only the widget view, to display with `raw=True`.

        `display(widget)` would not do: IPython's formatters add the widget's
        repr as `text/plain`, and nbval would compare that.
        """
        return {WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": self.model_id}}
